//! A log writer for the tests of this module: it keeps each write it
//! receives, apart.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Sink(pub Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    /// Everything written, in order.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
    }

    /// A `MakeWriter` for a fmt layer: every event goes to this sink.
    pub fn make_writer(&self) -> impl Fn() -> Sink + use<> {
        let sink = self.clone();
        move || sink.clone()
    }
}
