"""The 500 generated bad inputs: each refused with its message or handled, no crash, memory flat."""
