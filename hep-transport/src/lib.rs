//! HEP listeners (UDP, TCP, TLS) and senders. Being built: see the issue tracker.
