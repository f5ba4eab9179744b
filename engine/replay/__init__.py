"""Replay mode: recorded frames through the live shell's synchronous code, on a simulated clock."""
