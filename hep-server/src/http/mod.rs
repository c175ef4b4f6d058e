//! The HTTP side of `hep-server run`: the page (and, with the API, its router).

pub mod page;
