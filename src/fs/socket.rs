//! The control socket: the command files' writes without the mount, for a
//! read-only mount (whose control files the kernel will not let anyone
//! write) and for programs that would rather not open files.
//!
//! An abstract Unix socket, `@fetchfs/PID/control` (named in the `status`
//! file), so nothing is left on disk by a daemon that is killed. One request
//! a connection: the command file's name and a newline, then the lines as
//! they would be written to the file; the client shuts down its side. The
//! answer is one line, `ok`, or `error ERRNO MESSAGE` (`ERRNO` is `EINVAL`
//! for a malformed request, as a write to the file would get). Only the
//! mount's owner and root may steer it, as with the command files.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use fuser::Errno;
use parking_lot::Mutex;

use super::commands::{CommandFailed, CommandRunner};
use crate::control::{ControlFile, control_socket_name};

/// A request larger than this is refused (a pattern line is at most 8 KiB).
const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// How long a client may take to send its request.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// Binds this daemon's control socket.
pub fn bind() -> std::io::Result<UnixListener> {
    let address = SocketAddr::from_abstract_name(control_socket_name(std::process::id()))?;
    UnixListener::bind_addr(&address)
}

/// The control socket's hold on the mount: commands are taken while it
/// holds one; [`ControlSocket::close`] lets go, so the cache can close.
/// Other takers of commands (the fleet's command stream) share the hold.
#[derive(Clone)]
pub struct ControlSocket {
    runner: Arc<Mutex<Option<CommandRunner>>>,
}

impl ControlSocket {
    /// What applies commands, until the socket is closed.
    pub fn runner(&self) -> Option<CommandRunner> {
        self.runner.lock().clone()
    }

    /// Stops taking commands: later requests get `error EIO`.
    pub fn close(&self) {
        self.runner.lock().take();
    }
}

/// Answers requests on `listener` until closed, each connection on a
/// thread of its own. `owner` is the mount owner's uid.
pub fn serve(
    listener: UnixListener,
    runner: CommandRunner,
    owner: u32,
) -> std::io::Result<ControlSocket> {
    let shared = Arc::new(Mutex::new(Some(runner)));
    let held = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("fetchfs-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let runner = held.lock().clone();
                let _ = std::thread::Builder::new()
                    .name("fetchfs-control-request".into())
                    .spawn(move || answer(stream, runner.as_ref(), owner));
            }
        })?;
    Ok(ControlSocket { runner: shared })
}

fn answer(mut stream: UnixStream, runner: Option<&CommandRunner>, owner: u32) {
    let result = request(&mut stream, owner).and_then(|(file, lines)| {
        let runner = runner.ok_or_else(|| CommandFailed {
            errno: Errno::EIO,
            message: "the mount is being unmounted".into(),
        })?;
        let (done, result) = mpsc::channel();
        runner.apply(file, lines, move |outcome| {
            let _ = done.send(outcome);
        });
        result.recv().unwrap_or_else(|_| {
            Err(CommandFailed {
                errno: Errno::EIO,
                message: "the daemon is stopping".into(),
            })
        })
    });
    let reply = match result {
        Ok(()) => "ok\n".to_string(),
        Err(failed) => format!(
            "error {} {}\n",
            errno_name(failed.errno),
            failed.message.replace('\n', " ")
        ),
    };
    let _ = stream.write_all(reply.as_bytes());
}

/// Reads and checks one request: who asks, which command, what lines.
fn request(stream: &mut UnixStream, owner: u32) -> Result<(ControlFile, Vec<u8>), CommandFailed> {
    let failed = |errno, message: String| CommandFailed { errno, message };
    let _ = stream.set_read_timeout(Some(REQUEST_WAIT));
    let mut text = Vec::new();
    stream
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|error| failed(Errno::EIO, format!("reading the request: {error}")))?;
    if text.len() as u64 > MAX_REQUEST_BYTES {
        return Err(failed(
            Errno::EINVAL,
            format!("the request is over {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    // Checked once the request is read: an answer sent over unread bytes
    // would reach the client as a reset connection, not as the answer.
    let peer = nix::sys::socket::getsockopt(&*stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|error| failed(Errno::EIO, format!("who is asking: {error}")))?;
    if peer.uid() != 0 && peer.uid() != owner {
        return Err(failed(
            Errno::EACCES,
            format!("only the mount's owner (uid {owner}) and root may steer it"),
        ));
    }
    let (name, lines) = match text.iter().position(|b| *b == b'\n') {
        Some(end) => (&text[..end], text[end + 1..].to_vec()),
        None => (&text[..], Vec::new()),
    };
    match ControlFile::from_name(name) {
        Some(file) if file.is_command() => Ok((file, lines)),
        _ => Err(failed(
            Errno::EINVAL,
            format!(
                "unknown command {:?} (known: invalidate, evict, prefetch)",
                String::from_utf8_lossy(name)
            ),
        )),
    }
}

fn errno_name(errno: Errno) -> &'static str {
    match errno {
        Errno::EINVAL => "EINVAL",
        Errno::EACCES => "EACCES",
        Errno::ENOSPC => "ENOSPC",
        _ => "EIO",
    }
}
