"""Tools the model can call: protocol, registry, built-ins, workflows as tools, client bridge."""
