//! Writing a command's output: every byte reaches stdout or the caller learns it did not (a
//! script must be able to tell that `read` printed nothing), and a full or closed stream never
//! panics the process (as `println!` / `eprintln!` would).

use std::io::Write;
use std::os::fd::AsFd;

/// Write all of `bytes` to stdout, unbuffered. A full disk, a closed pipe and a closed
/// descriptor are errors (std's own stdout quietly swallows the last one).
pub fn stdout(bytes: &[u8]) -> std::io::Result<()> {
    let out = std::io::stdout();
    let fd = out.as_fd();
    let mut rest = bytes;
    while !rest.is_empty() {
        match rustix::io::write(fd, rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(rustix::io::Errno::INTR) => {}
            // A non-blocking descriptor inherited from the caller: wait for the reader.
            Err(rustix::io::Errno::AGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One diagnostic line on stderr; a failure to write it is ignored (there is nowhere left to
/// say so), never a panic.
pub fn diag(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
