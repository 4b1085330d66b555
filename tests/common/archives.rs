//! Archives for the builds tests install.

use std::io::Write;

/// An archive of `entries` (path, contents; plain files, mode 0644) in the
/// format `name`'s ending says. Names are written as given, even hostile ones.
pub fn archive_bytes(name: &str, entries: &[(&str, &[u8])]) -> Vec<u8> {
    if name.ends_with(".zip") {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        for (path, data) in entries {
            zip.start_file(*path, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        return out.into_inner();
    }
    let mut tar_bytes = Vec::new();
    {
        let mut tar = tar::Builder::new(&mut tar_bytes);
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // Write the name bytes directly: set_path refuses `..`.
            let bytes = path.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            tar.append(&header, *data).unwrap();
        }
        tar.finish().unwrap();
    }
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar_bytes).unwrap();
        enc.finish().unwrap()
    } else if name.ends_with(".tar.bz2") || name.ends_with(".tar.bzip2") {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        enc.write_all(&tar_bytes).unwrap();
        enc.finish().unwrap()
    } else if name.ends_with(".tar.xz") {
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(&tar_bytes).unwrap();
        enc.finish().unwrap()
    } else {
        tar_bytes
    }
}
