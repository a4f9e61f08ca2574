//! The seed scenario in Rust: for each technique, map memory `MAP_SHARED`, fork, let the
//! child write, and read the child's write in the parent after `waitpid`.
//!
//! `cargo run -p shmkit --example seed`

use shmkit::{fork, unique_name, unlink, Region};

fn main() -> Result<(), shmkit::Error> {
  let name = unique_name("seed");
  let techniques: Vec<(&str, Region)> = vec![
    ("/dev/zero", Region::dev_zero(4096)?),
    ("anonymous", Region::anonymous(4096)?),
    ("named", Region::create(&name, 4096)?),
  ];
  for (label, region) in &techniques {
    // SAFETY: this program is single-threaded; the child writes and returns.
    let mut child = unsafe {
      fork(|| {
        let message = format!("hello from child {}", std::process::id());
        region.write_at(0, message.as_bytes()).map_or(1, |()| 0)
      })
    }?;
    let status = child.wait()?;
    let mut bytes = [0u8; 64];
    region.read_at(0, &mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    println!(
      "{label:>10}: child {} exited {:?}; parent reads {:?}",
      child.pid(),
      status.code(),
      text.trim_end_matches('\0')
    );
  }
  unlink(&name)?;
  Ok(())
}
