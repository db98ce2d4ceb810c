//! Linux `splice(2)` between a socket and a pipe: the relay's zero-copy path.
//!
//! A [`Pipe`] is a non-blocking pipe pair; [`Pipe::fill`] moves bytes from a socket into it
//! and [`Pipe::drain`] from it into a socket, without copying them through user space. Pipes
//! are taken from a small process-wide pool ([`Pipe::take`]) and given back only when empty
//! ([`Pipe::give_back`]), so a connection holds one only while data is in flight: an idle
//! connection holds no descriptors beyond its two sockets.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

/// How many empty pipes the pool keeps (two descriptors each); more are closed.
const POOL_MAX: usize = 16;

/// The pipe capacity asked for (`F_SETPIPE_SZ`); the kernel default (64 KiB) if refused.
const PIPE_SIZE: libc::c_int = 256 * 1024;

/// Empty pipes ready for reuse.
static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// A non-blocking pipe used to splice between two sockets.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    pending: usize,
}

impl Pipe {
    /// Creates a new pipe (`pipe2` with `O_NONBLOCK | O_CLOEXEC`).
    ///
    /// # Errors
    ///
    /// The error of `pipe2` (typically `EMFILE` when descriptors ran out).
    pub fn new() -> io::Result<Self> {
        let mut fds = [-1 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for `pipe2` to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `pipe2` succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe moves more per system call; a refusal (e.g. over
        // /proc/sys/fs/pipe-max-size for an unprivileged user) keeps the default.
        // SAFETY: `fcntl(F_SETPIPE_SZ)` on a pipe descriptor we own; no pointers involved.
        let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Self {
            read,
            write,
            pending: 0,
        })
    }

    /// Takes an empty pipe from the pool, or creates one.
    ///
    /// # Errors
    ///
    /// As [`Pipe::new`].
    pub fn take() -> io::Result<Self> {
        let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match pooled {
            Some(p) => Ok(p),
            None => Self::new(),
        }
    }

    /// Returns the pipe to the pool if it is empty and the pool has room; closes it otherwise.
    pub fn give_back(self) {
        if self.pending != 0 {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_MAX {
            pool.push(self);
        }
    }

    /// Bytes in the pipe, spliced in and not yet out.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Splices up to `max` bytes from the socket `from` into the pipe. Returns the count,
    /// 0 at the socket's end of stream; `WouldBlock` when the socket has nothing to read
    /// (the pipe must be empty, see [`Pipe::pending`], or a full pipe looks the same).
    ///
    /// # Errors
    ///
    /// The error of `splice`.
    pub fn fill(&mut self, from: RawFd, max: usize) -> io::Result<usize> {
        let n = splice(from, self.write.as_raw_fd(), max)?;
        self.pending += n;
        Ok(n)
    }

    /// Splices what is in the pipe (at most [`Pipe::pending`]) into the socket `to`. Returns
    /// the count; `WouldBlock` when the socket cannot take more now.
    ///
    /// # Errors
    ///
    /// The error of `splice` (`EPIPE`, `ECONNRESET` when the peer is gone).
    pub fn drain(&mut self, to: RawFd) -> io::Result<usize> {
        if self.pending == 0 {
            return Ok(0);
        }
        let n = splice(self.read.as_raw_fd(), to, self.pending)?;
        self.pending -= n;
        Ok(n)
    }
}

/// One non-blocking `splice` of up to `len` bytes from `from` to `to`.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: null offsets (both ends are a socket or a pipe, which have no file position);
    // the descriptors are valid for the duration of the call (borrowed by the caller). A bad
    // descriptor is reported as an error, not undefined behaviour.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    // `splice` returns -1 (error) or a count no larger than `len`.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn moves_bytes_between_sockets_and_reports_eof() {
        let (mut a_out, a_in) = pair();
        let (b_out, mut b_in) = pair();
        a_in.set_nonblocking(true).unwrap();
        b_out.set_nonblocking(true).unwrap();
        let mut p = Pipe::take().unwrap();
        let e = p.fill(a_in.as_raw_fd(), 1 << 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "nothing sent yet");
        a_out.write_all(b"hello splice").unwrap();
        a_out.shutdown(std::net::Shutdown::Write).unwrap();
        let mut moved = 0;
        loop {
            match p.fill(a_in.as_raw_fd(), 1 << 16) {
                Ok(0) => break,
                Ok(n) => {
                    moved += n;
                    while p.pending() > 0 {
                        p.drain(b_out.as_raw_fd()).unwrap();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(moved, 12);
        drop(b_out);
        let mut got = Vec::new();
        b_in.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello splice");
        p.give_back();
    }
}
