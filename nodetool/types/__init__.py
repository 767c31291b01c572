"""Pure values shared by every layer: messages, tool specs, chat events, job events."""
