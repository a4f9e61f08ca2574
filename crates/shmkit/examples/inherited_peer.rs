//! A child started by a Node.js parent with `shareWith(...)` spawn options: reads what it was
//! handed (`shmkit::inherited()`, the `SHMKIT_INHERITED` list of `docs/layout.md`), maps
//! every region, reads the native-endian `i32` the parent put at byte 0 and
//! writes it + 1 at byte 4, then posts every semaphore. Prints one JSON line describing what
//! it saw: `[{"kind":"memfd","read":41}, …]`. The cross-language test
//! `__test__/interop-rust.spec.ts` runs it.

use std::os::fd::{FromRawFd, OwnedFd};

use shmkit::{Inherited, MapOptions, ObjectName, Region, Semaphore};

fn main() {
  if let Err(e) = run() {
    eprintln!("inherited_peer: {e}");
    std::process::exit(1);
  }
}

fn run() -> shmkit::Result<()> {
  let mut seen = Vec::new();
  for entry in shmkit::inherited()? {
    let (kind, region) = match entry {
      Inherited::Memfd { fd, read_only } => {
        // SAFETY: the descriptor was handed to this process to be consumed; nothing else
        // here uses or closes it.
        let borrowed = unsafe { shmkit::borrow_fd(fd) }?;
        let region = Region::from_fd(borrowed, &view(read_only))?;
        // SAFETY: the descriptor is open (checked by borrow_fd) and ours alone; the region
        // holds its own duplicate, so this one is closed when dropped here.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        ("memfd", region)
      }
      Inherited::Named { name, read_only } => ("named", Region::open_with(&ObjectName::new(&name)?, &view(read_only))?),
      Inherited::File { path, read_only } => ("file", Region::file_with(path, None, &view(read_only).create(false))?),
      Inherited::Semaphore { name } => {
        Semaphore::open(&ObjectName::new(&name)?)?.post()?;
        seen.push(format!(r#"{{"kind":"semaphore","name":"{name}"}}"#));
        continue;
      }
      other => return Err(shmkit::Error::new(shmkit::ErrorKind::Unsupported, format!("{other:?}"))),
    };
    let mut bytes = [0u8; 4];
    region.read_at(0, &mut bytes)?;
    let read = i32::from_ne_bytes(bytes);
    region.write_at(4, &(read + 1).to_ne_bytes())?;
    seen.push(format!(r#"{{"kind":"{kind}","read":{read}}}"#));
  }
  println!("[{}]", seen.join(","));
  Ok(())
}

/// A read-only hand-over is mapped copy-on-write, as `inherited()` does in Node.js.
fn view(read_only: bool) -> MapOptions {
  MapOptions::new().read_only(read_only).private(read_only)
}
