//! gmv-report (being written)
