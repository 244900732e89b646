"""Every change to the domain happens here. Each function says what it writes, publishes and enqueues."""
