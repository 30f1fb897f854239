//! A local Astarte stand-in for tests and the demo.
