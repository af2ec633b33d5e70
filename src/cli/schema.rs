use std::io::Write;

pub fn run() -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(crate::config::schema_json().as_bytes()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
