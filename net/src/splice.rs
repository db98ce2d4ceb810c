//! Linux `splice(2)` between a socket and a pipe: the relay's zero-copy path.
//!
//! A [`Pipe`] is a non-blocking pipe pair; [`Pipe::fill`] moves bytes from a socket into it
//! and [`Pipe::drain`] from it into a socket, without copying them through user space. Pipes
//! are taken from a small process-wide pool ([`Pipe::take`]) and given back only when empty
//! ([`Pipe::give_back`]), so a connection holds one only while data is in flight: an idle
//! connection holds no descriptors beyond its two sockets.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

use rustix::pipe::{fcntl_setpipe_size, pipe_with, PipeFlags, SpliceFlags};

/// How many empty pipes the pool keeps (two descriptors each); more are closed.
const POOL_MAX: usize = 16;

/// The pipe capacity asked for (`F_SETPIPE_SZ`); the kernel default (64 KiB) if refused.
const PIPE_SIZE: usize = 256 * 1024;

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
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // A larger pipe moves more per system call; a refusal (e.g. over
        // /proc/sys/fs/pipe-max-size for an unprivileged user) keeps the default.
        let _ = fcntl_setpipe_size(&write, PIPE_SIZE);
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
    /// `from` must be an open descriptor for the duration of the call; a negative one is
    /// `EBADF`. [`Pipe::fill_from`] takes a borrowed descriptor instead.
    ///
    /// # Errors
    ///
    /// The error of `splice`.
    pub fn fill(&mut self, from: RawFd, max: usize) -> io::Result<usize> {
        self.fill_from(borrow(from)?, max)
    }

    /// As [`Pipe::fill`], from a borrowed descriptor.
    ///
    /// # Errors
    ///
    /// The error of `splice`.
    pub fn fill_from(&mut self, from: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let n = splice(from, self.write.as_fd(), max)?;
        self.pending += n;
        Ok(n)
    }

    /// Splices what is in the pipe (at most [`Pipe::pending`]) into the socket `to`. Returns
    /// the count; `WouldBlock` when the socket cannot take more now.
    ///
    /// `to` must be an open descriptor for the duration of the call; a negative one is
    /// `EBADF`. [`Pipe::drain_into`] takes a borrowed descriptor instead.
    ///
    /// # Errors
    ///
    /// The error of `splice` (`EPIPE`, `ECONNRESET` when the peer is gone).
    pub fn drain(&mut self, to: RawFd) -> io::Result<usize> {
        self.drain_into(borrow(to)?)
    }

    /// As [`Pipe::drain`], into a borrowed descriptor.
    ///
    /// # Errors
    ///
    /// The error of `splice`.
    pub fn drain_into(&mut self, to: BorrowedFd<'_>) -> io::Result<usize> {
        if self.pending == 0 {
            return Ok(0);
        }
        let n = splice(self.read.as_fd(), to, self.pending)?;
        self.pending -= n;
        Ok(n)
    }
}

/// Borrows a raw descriptor for one call (the `RawFd` entry points; the only `unsafe` here).
fn borrow<'a>(fd: RawFd) -> io::Result<BorrowedFd<'a>> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(
            rustix::io::Errno::BADF.raw_os_error(),
        ));
    }
    // SAFETY: `fd` is not -1 (checked), and the caller of `fill`/`drain` guarantees it is open
    // for the duration of that call, which is the only use of the returned `BorrowedFd` (it
    // does not escape the call). Were it closed anyway, the kernel answers `EBADF` (rustix
    // hands the number to the system call unchanged); no memory is involved.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// One non-blocking `splice` of up to `len` bytes from `from` to `to` (both a socket or a
/// pipe, so no offsets).
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    Ok(rustix::pipe::splice(from, None, to, None, len, flags)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

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

    #[test]
    fn borrowed_descriptors_and_bad_ones() {
        let (mut a_out, a_in) = pair();
        let (b_out, mut b_in) = pair();
        a_in.set_nonblocking(true).unwrap();
        b_out.set_nonblocking(true).unwrap();
        let mut p = Pipe::new().unwrap();
        assert_eq!(
            p.fill(-1, 10).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        assert_eq!(p.pending(), 0);
        a_out.write_all(b"borrowed").unwrap();
        let mut n = 0;
        while n == 0 {
            match p.fill_from(a_in.as_fd(), 1 << 16) {
                Ok(m) => n = m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((n, p.pending()), (8, 8));
        assert_eq!(p.drain(-5).unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(p.drain_into(b_out.as_fd()).unwrap(), 8);
        assert_eq!(p.pending(), 0);
        let mut got = [0u8; 8];
        b_in.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"borrowed");
    }
}
