//! What a packed binary asks of the machine that runs it: its architecture
//! (read from the ELF header, so the charm's name and bases always match the
//! binary inside it) and the newest glibc symbol version it links against
//! (from `readelf --version-info`, binutils), which decides the oldest
//! Ubuntu base the charm can claim.

use std::cmp::Ordering;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// A glibc symbol version such as `2.34` or `2.2.5`, compared numerically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlibcVersion(pub Vec<u32>);

impl GlibcVersion {
    /// Parse `2.35` (or `GLIBC_2.35`).
    pub fn parse(text: &str) -> Option<GlibcVersion> {
        let digits = text.strip_prefix("GLIBC_").unwrap_or(text);
        let parts: Option<Vec<u32>> = digits.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(GlibcVersion)
    }
}

impl Ord for GlibcVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for GlibcVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        write!(f, "{}", parts.join("."))
    }
}

/// The Debian name of the architecture an ELF executable was built for.
pub fn debian_arch(binary: &Path) -> Result<&'static str, String> {
    let mut header = [0u8; 20];
    File::open(binary)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| format!("cannot read the ELF header of {}: {e}", binary.display()))?;
    arch_from_header(&header).map_err(|e| format!("{}: {e}", binary.display()))
}

/// `e_ident` (class, byte order) and `e_machine` to a Debian architecture.
fn arch_from_header(header: &[u8; 20]) -> Result<&'static str, String> {
    if &header[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    let is_64 = header[4] == 2;
    let little_endian = header[5] == 1;
    let machine = if little_endian {
        u16::from_le_bytes([header[18], header[19]])
    } else {
        u16::from_be_bytes([header[18], header[19]])
    };
    // e_machine values from the System V ABI (elf.h: EM_*).
    match (machine, is_64, little_endian) {
        (62, true, _) => Ok("amd64"),
        (183, true, _) => Ok("arm64"),
        (40, false, true) => Ok("armhf"),
        (21, true, true) => Ok("ppc64el"),
        (22, true, false) => Ok("s390x"),
        (243, true, _) => Ok("riscv64"),
        (3, false, _) => Ok("i386"),
        _ => Err(format!(
            "ELF machine {machine} ({}-bit, {}) has no Debian architecture we know",
            if is_64 { 64 } else { 32 },
            if little_endian {
                "little-endian"
            } else {
                "big-endian"
            }
        )),
    }
}

/// Every `GLIBC_x.y` version the binary needs, sorted, from
/// `readelf --version-info` (its `.gnu.version_r` section). Empty for a
/// static binary.
pub fn required_glibc_versions(binary: &Path) -> Result<Vec<GlibcVersion>, String> {
    let out = Command::new("readelf")
        .args(["--version-info", "--wide"])
        .arg(binary)
        .output()
        .map_err(|e| {
            format!(
                "cannot run readelf ({e}); it checks which glibc the charm needs: \
                 apt-get install binutils"
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "readelf --version-info {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(glibc_versions_in(&String::from_utf8_lossy(&out.stdout)))
}

/// The distinct `GLIBC_<digits>` names in readelf's (or objdump's) output,
/// sorted; `GLIBC_PRIVATE` and the like are not versions and are skipped.
pub fn glibc_versions_in(text: &str) -> Vec<GlibcVersion> {
    let mut versions: Vec<GlibcVersion> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|word| word.starts_with("GLIBC_"))
        .filter_map(GlibcVersion::parse)
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s| GlibcVersion::parse(s).unwrap();
        assert!(v("2.34") < v("2.35"));
        assert!(v("2.9") < v("2.10"));
        assert!(v("2.2.5") < v("2.3"));
        assert_eq!(v("GLIBC_2.35"), v("2.35"));
        assert_eq!(v("2.35").to_string(), "2.35");
        assert!(GlibcVersion::parse("PRIVATE").is_none());
    }

    #[test]
    fn readelf_output_yields_the_needed_versions() {
        let sample = "\
Version needs section '.gnu.version_r' contains 2 entries:
 Addr: 0x0000000000000a28  Offset: 0x000a28  Link: 7 (.dynstr)
  000000: Version: 1  File: ld-linux-x86-64.so.2  Cnt: 1
  0x0010:   Name: GLIBC_2.3  Flags: none  Version: 9
  0x0020: Version: 1  File: libc.so.6  Cnt: 3
  0x0030:   Name: GLIBC_2.34  Flags: none  Version: 5
  0x0040:   Name: GLIBC_2.2.5  Flags: none  Version: 2
  0x0050:   Name: GLIBC_PRIVATE  Flags: none  Version: 3
  0x0060:   Name: GLIBC_2.34  Flags: none  Version: 5
";
        let found: Vec<String> = glibc_versions_in(sample)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["2.2.5", "2.3", "2.34"]);
    }

    #[test]
    fn elf_headers_name_debian_architectures() {
        let header = |class: u8, data: u8, machine: u16| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(b"\x7fELF");
            h[4] = class;
            h[5] = data;
            let m = if data == 1 {
                machine.to_le_bytes()
            } else {
                machine.to_be_bytes()
            };
            h[18..20].copy_from_slice(&m);
            h
        };
        assert_eq!(arch_from_header(&header(2, 1, 62)), Ok("amd64"));
        assert_eq!(arch_from_header(&header(2, 1, 183)), Ok("arm64"));
        assert_eq!(arch_from_header(&header(2, 2, 22)), Ok("s390x"));
        assert_eq!(arch_from_header(&header(2, 1, 21)), Ok("ppc64el"));
        assert!(arch_from_header(&header(2, 1, 9999)).is_err());
        assert!(arch_from_header(&[0u8; 20]).is_err());
    }

    #[test]
    fn this_test_binary_is_read_as_the_machine_it_runs_on() {
        let me = std::env::current_exe().unwrap();
        let expected = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => return eprintln!("no expectation for {other}"),
        };
        assert_eq!(debian_arch(&me), Ok(expected));
    }
}
