//! Prompts on the controlling terminal (`/dev/tty`); passwords with echo off, through
//! `rpassword`.
//!
//! rpassword reads the password in raw mode and answers Ctrl-C by raising SIGINT while the
//! terminal is still without echo; with SIGINT's default action the process would die before
//! rpassword restores the settings, leaving the shell without echo (seen with rpassword
//! 7.5.4). So while it prompts, SIGINT does nothing (signal-hook's conditional default,
//! disarmed): rpassword then returns `Interrupted`, restores the terminal, and the prompt
//! ends as cancelled. Outside the prompt SIGINT keeps its default action.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// True while SIGINT should act as by default (terminate); false during a no-echo prompt.
/// `None` if the handler could not be installed (SIGINT then keeps its plain default).
static SIGINT_DEFAULT: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();

/// Runs `f` with SIGINT deferred (see the module docs).
fn without_sigint<T>(f: impl FnOnce() -> T) -> T {
    let flag = SIGINT_DEFAULT.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(true));
        signal_hook::flag::register_conditional_default(signal_hook::consts::SIGINT, flag.clone())
            .ok()
            .map(|_| flag)
    });
    if let Some(flag) = flag {
        flag.store(false, Ordering::SeqCst);
    }
    let out = f();
    if let Some(flag) = flag {
        flag.store(true, Ordering::SeqCst);
    }
    out
}

/// The longest answer accepted (a password or user name is at most 255 bytes).
const MAX_ANSWER: usize = 1024;

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
    if secret {
        drop(tty);
        let answer =
            without_sigint(|| rpassword::prompt_password(prompt)).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::Interrupted => PromptError::Cancelled,
                _ => PromptError::Io(e),
            })?;
        if answer.len() > MAX_ANSWER {
            return Err(PromptError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer too long",
            )));
        }
        return Ok(answer);
    }
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .map_err(PromptError::Io)?;
    let line = read_line(&tty)?;
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
                // Ctrl-C or Ctrl-D arriving as bytes (a terminal in raw mode).
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
