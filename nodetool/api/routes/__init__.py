"""One router module per API area; the app factories choose which to mount."""
