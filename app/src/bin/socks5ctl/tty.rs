//! Prompts on the controlling terminal (`/dev/tty`), with echo off for passwords.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

/// The longest answer accepted (a password or user name is at most 255 bytes).
const MAX_ANSWER: usize = 1024;

/// Restores the terminal's settings when dropped (also on an error path).
struct EchoOff<'a> {
    tty: &'a File,
    saved: libc::termios,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a File) -> io::Result<Self> {
        let fd = tty.as_raw_fd();
        // SAFETY: `termios` is plain data, fully written by a successful tcgetattr; `fd` is an
        // open descriptor owned by `tty`, which outlives this guard.
        let saved = unsafe {
            let mut t = std::mem::zeroed::<libc::termios>();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return Err(io::Error::last_os_error());
            }
            t
        };
        let mut quiet = saved;
        // No echo; and Ctrl-C arrives as a byte (0x03), so that an interrupt cannot leave the
        // terminal without echo: the prompt sees it, restores the settings and gives up.
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ISIG);
        // SAFETY: as above; `quiet` is a valid termios derived from the current settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { tty, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same open descriptor.
        unsafe {
            libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSAFLUSH, &self.saved);
        }
    }
}

/// Why a prompt gave no answer.
#[derive(Debug)]
pub(crate) enum PromptError {
    /// There is no terminal to ask on (`/dev/tty` cannot be opened).
    NoTerminal,
    /// The user pressed Ctrl-C or Ctrl-D.
    Cancelled,
    /// Reading or writing the terminal failed.
    Io(io::Error),
}

/// Writes `prompt` on the terminal and reads one line, without echo if `secret`. The line
/// ending is not part of the answer.
pub(crate) fn ask(prompt: &str, secret: bool) -> Result<String, PromptError> {
    let mut tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| PromptError::NoTerminal)?;
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .map_err(PromptError::Io)?;
    let line = if secret {
        let guard = EchoOff::new(&tty).map_err(PromptError::Io)?;
        let line = read_line(&tty);
        drop(guard);
        // The user's Enter was not echoed.
        let _ = tty.write_all(b"\n");
        line?
    } else {
        read_line(&tty)?
    };
    String::from_utf8(line).map_err(|_| {
        PromptError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "the answer is not valid UTF-8",
        ))
    })
}

fn read_line(mut tty: &File) -> Result<Vec<u8>, PromptError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tty.read(&mut byte) {
            Ok(0) => {
                return if line.is_empty() {
                    Err(PromptError::Cancelled)
                } else {
                    Ok(line)
                };
            }
            Ok(_) => match byte[0] {
                b'\n' | b'\r' => return Ok(line),
                // Ctrl-C (with ISIG off) or Ctrl-D.
                0x03 | 0x04 => return Err(PromptError::Cancelled),
                b => {
                    if line.len() >= MAX_ANSWER {
                        return Err(PromptError::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "answer too long",
                        )));
                    }
                    line.push(b);
                }
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PromptError::Io(e)),
        }
    }
}
