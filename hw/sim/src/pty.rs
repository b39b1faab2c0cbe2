//! A pseudo-terminal pair for simulators: the simulator keeps the master
//! side, a driver opens the slave path exactly like a real serial port. An
//! optional symlink gives a stable path across [`PtyPort::open`] calls, like
//! a udev rule does for real devices.

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

/// The master side of a pty, async.
#[derive(Debug)]
pub struct PtyPort {
    reader: pipe::Receiver,
    writer: pipe::Sender,
    // Kept open so the master never sees a hang-up while no driver is attached.
    _slave: OwnedFd,
    slave_path: PathBuf,
}

fn nix_err(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

impl PtyPort {
    /// Opens a raw-mode pty; if `link` is given, points that symlink at the slave.
    pub fn open(link: Option<&Path>) -> io::Result<Self> {
        let pty = openpty(None, None).map_err(nix_err)?;
        let mut t = tcgetattr(&pty.slave).map_err(nix_err)?;
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t).map_err(nix_err)?;
        let flags =
            OFlag::from_bits_truncate(fcntl(&pty.master, FcntlArg::F_GETFL).map_err(nix_err)?);
        fcntl(&pty.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(nix_err)?;
        let slave_path = nix::unistd::ttyname(&pty.slave).map_err(nix_err)?;
        if let Some(link) = link {
            let tmp = link.with_extension("tmp-link");
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&slave_path, &tmp)?;
            std::fs::rename(&tmp, link)?;
        }
        // A pty master is not a pipe, but it is a non-blocking character
        // device that epoll handles the same way; tokio's pipe types are the
        // safe way to register an owned descriptor.
        let writer = pipe::Sender::from_owned_fd_unchecked(pty.master.try_clone()?)?;
        let reader = pipe::Receiver::from_owned_fd_unchecked(pty.master)?;
        Ok(Self {
            reader,
            writer,
            _slave: pty.slave,
            slave_path,
        })
    }

    /// The slave device path (e.g. /dev/pts/7).
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }
}

impl AsyncRead for PtyPort {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for PtyPort {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}
