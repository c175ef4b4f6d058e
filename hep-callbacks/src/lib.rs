//! The HEP callback API as tower layers. Being built: see the issue tracker.
