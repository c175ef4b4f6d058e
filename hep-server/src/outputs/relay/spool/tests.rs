//! The spool as a whole: order, restarts, damage, bounds, clean-up.

use super::*;
use crate::testing::TempDir;

fn small() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 3 * 4096,
        segment_bytes: 4096,
        ..SpoolConfig::default()
    }
}

fn open(dir: &Path, config: SpoolConfig) -> Spool {
    Spool::open(dir, config, Arc::new(SpoolStats::default())).unwrap()
}

fn message(i: u32) -> Vec<u8> {
    format!("message {i:06} {}", "x".repeat(90)).into_bytes()
}

/// Reads every record left, marking each delivered.
fn drain(spool: &mut Spool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(e) = spool.next().unwrap() {
        spool.delivered(e.end);
        spool.set_resume(e.end);
        out.push(e.bytes.to_vec());
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn messages_come_back_in_order_across_segments() {
    let dir = TempDir::new("order");
    let mut s = open(
        dir.path(),
        SpoolConfig {
            max_bytes: 1 << 20,
            ..small()
        },
    );
    for i in 0..200 {
        s.append(&message(i)).unwrap();
    }
    s.flush().unwrap();
    assert!(segment_files(dir.path()).len() > 3, "several segments");
    assert_eq!(s.stats().messages(), 200);
    let got = drain(&mut s);
    assert_eq!(got, (0..200).map(message).collect::<Vec<_>>());
    assert_eq!(s.stats().messages(), 0);
}

#[test]
fn a_reopened_spool_resumes_at_the_stored_cursor() {
    let dir = TempDir::new("resume");
    {
        let mut s = open(dir.path(), small());
        for i in 0..10 {
            s.append(&message(i)).unwrap();
        }
        s.flush().unwrap();
        for _ in 0..4 {
            let e = s.next().unwrap().unwrap();
            s.delivered(e.end);
            s.set_resume(e.end);
        }
        s.sync().unwrap();
    }
    let mut s = open(dir.path(), small());
    assert_eq!(s.stats().messages(), 6);
    assert_eq!(drain(&mut s), (4..10).map(message).collect::<Vec<_>>());
}

#[test]
fn records_between_resume_and_delivered_are_read_again_after_a_restart() {
    let dir = TempDir::new("window");
    {
        let mut s = open(dir.path(), small());
        for i in 0..5 {
            s.append(&message(i)).unwrap();
        }
        s.flush().unwrap();
        let first = s.next().unwrap().unwrap();
        s.delivered(first.end);
        s.set_resume(first.end);
        for _ in 0..3 {
            let e = s.next().unwrap().unwrap();
            s.delivered(e.end);
        }
        s.sync().unwrap();
    }
    let mut s = open(dir.path(), small());
    // 1..4 written but inside the window: sent again; only 4 was never sent.
    assert_eq!(s.stats().messages(), 1);
    let e = s.next().unwrap().unwrap();
    assert_eq!(e.bytes, message(1));
    assert!(
        e.start < s.delivered_pos(),
        "counted as a replay by the relay"
    );
}

#[test]
fn a_torn_tail_is_cut_off_and_counted_and_the_rest_survives() {
    let dir = TempDir::new("torn");
    {
        let mut s = open(dir.path(), small());
        for i in 0..3 {
            s.append(&message(i)).unwrap();
        }
        s.sync().unwrap();
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let mut s = open(dir.path(), small());
    assert_eq!(s.stats().dropped_corrupt(), 1);
    assert_eq!(drain(&mut s), vec![message(0), message(1)]);
    s.append(&message(3)).unwrap();
    s.flush().unwrap();
    assert_eq!(drain(&mut s), vec![message(3)]);
}

#[test]
fn a_corrupt_record_is_skipped_and_counted_and_the_records_after_it_survive() {
    let dir = TempDir::new("crc");
    {
        let mut s = open(dir.path(), small());
        for i in 0..3 {
            s.append(&message(i)).unwrap();
        }
        s.sync().unwrap();
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let second = (HEADER_LEN + RECORD_HEADER_LEN) as usize + message(0).len();
    bytes[second + 12] ^= 0x40;
    fs::write(&seg, bytes).unwrap();
    let mut s = open(dir.path(), small());
    assert_eq!(s.stats().dropped_corrupt(), 1);
    assert_eq!(drain(&mut s), vec![message(0), message(2)]);
}

#[test]
fn a_foreign_file_with_a_segment_name_is_refused() {
    let dir = TempDir::new("foreign");
    fs::write(
        dir.path().join(segment::file_name(1)),
        b"PK\x03\x04 a zip file",
    )
    .unwrap();
    let e = Spool::open(dir.path(), small(), Arc::default()).unwrap_err();
    assert!(matches!(e, SpoolError::Foreign(_)), "{e}");
    assert!(e.to_string().contains("00000000000000000001.seg"), "{e}");
    // Nothing was overwritten.
    assert_eq!(
        fs::read(dir.path().join(segment::file_name(1))).unwrap(),
        b"PK\x03\x04 a zip file"
    );
}

#[test]
fn over_max_bytes_the_oldest_segments_go_and_their_unsent_messages_are_counted() {
    let dir = TempDir::new("full");
    let mut s = open(dir.path(), small());
    let n = 200;
    for i in 0..n {
        s.append(&message(i)).unwrap();
        s.flush().unwrap();
    }
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= small().max_bytes, "{on_disk} bytes on disk");
    assert_eq!(s.stats().bytes(), on_disk);
    let got = drain(&mut s);
    let dropped = s.stats().dropped_full();
    assert!(dropped > 0);
    assert_eq!(
        got.len() as u64 + dropped,
        u64::from(n),
        "every message sent or counted"
    );
    // What is left is the newest messages, in order.
    let first = n - got.len() as u32;
    assert_eq!(got, (first..n).map(message).collect::<Vec<_>>());
}

#[test]
fn sent_segments_are_deleted_once_the_cursor_is_stored() {
    let dir = TempDir::new("cleanup");
    let mut s = open(
        dir.path(),
        SpoolConfig {
            max_bytes: 1 << 20,
            ..small()
        },
    );
    for i in 0..200 {
        s.append(&message(i)).unwrap();
    }
    s.flush().unwrap();
    assert!(segment_files(dir.path()).len() > 3);
    drain(&mut s);
    s.sync().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1, "only the head is left");
    assert_eq!(
        s.stats().bytes(),
        fs::metadata(&segment_files(dir.path())[0]).unwrap().len()
    );
}

#[cfg(unix)]
#[test]
fn a_new_spool_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("private");
    let spool_dir = dir.path().join("a/spool");
    let mut s = open(&spool_dir, small());
    s.append(&message(1)).unwrap();
    s.sync().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool_dir), 0o700);
    assert_eq!(mode(&segment_files(&spool_dir)[0]), 0o600);
    assert_eq!(mode(&spool_dir.join(cursor::FILE)), 0o600);
}

/// A spool of `n` messages in one segment (closed by a reopen), and that segment's path.
fn one_segment(dir: &Path, n: u32) -> PathBuf {
    {
        let mut s = open(dir, SpoolConfig::default());
        for i in 0..n {
            s.append(&message(i)).unwrap();
        }
        s.sync().unwrap();
    }
    let segs = segment_files(dir);
    assert_eq!(segs.len(), 1, "one segment");
    segs[0].clone()
}

/// Where record `i` of a segment of `message`s starts.
fn record_start(i: u32) -> usize {
    HEADER_LEN as usize + i as usize * (RECORD_HEADER_LEN as usize + message(0).len())
}

#[test]
fn two_corrupt_bytes_in_the_middle_lose_one_message_and_the_rest_is_read() {
    let dir = TempDir::new("resync-payload");
    let n = 1_000;
    let seg = one_segment(dir.path(), n);
    let mut bytes = fs::read(&seg).unwrap();
    // Two bytes of the payload of message 500.
    let at = record_start(500) + RECORD_HEADER_LEN as usize + 40;
    bytes[at] ^= 0xff;
    bytes[at + 1] ^= 0x5a;
    fs::write(&seg, bytes).unwrap();

    let mut s = open(dir.path(), SpoolConfig::default());
    assert_eq!(
        s.stats().messages(),
        u64::from(n - 1),
        "the backlog after it"
    );
    let got = drain(&mut s);
    let want: Vec<_> = (0..n).filter(|&i| i != 500).map(message).collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert_eq!(s.stats().dropped_corrupt(), 1, "one message lost");
    assert_eq!(s.stats().corrupt_estimated(), 0, "counted, not estimated");
    assert_eq!(
        s.stats().corrupt_bytes(),
        RECORD_HEADER_LEN + message(500).len() as u64
    );
    // The damage is counted once, not again when the segment is read a second time
    // (a replay), nor by the next run once the messages around it were delivered.
    s.rewind(Pos::default());
    assert_eq!(drain(&mut s), want);
    assert_eq!(s.stats().dropped_corrupt(), 1);
    s.sync().unwrap();
    drop(s);
    let s = open(dir.path(), SpoolConfig::default());
    assert_eq!(s.stats().messages(), 0);
    assert_eq!(s.stats().dropped_corrupt(), 0, "nothing left to lose");
}

#[test]
fn a_corrupt_length_field_is_skipped_to_the_next_record_and_the_loss_estimated() {
    let dir = TempDir::new("resync-length");
    let n = 300;
    let seg = one_segment(dir.path(), n);
    let mut bytes = fs::read(&seg).unwrap();
    // The length of message 100 now points far beyond its record.
    let at = record_start(100);
    bytes[at + 1] ^= 0x03;
    bytes[at + 2] ^= 0x01;
    fs::write(&seg, bytes).unwrap();

    let mut s = open(dir.path(), SpoolConfig::default());
    let got = drain(&mut s);
    let want: Vec<_> = (0..n).filter(|&i| i != 100).map(message).collect();
    assert_eq!(got, want);
    assert_eq!(
        s.stats().dropped_corrupt(),
        1,
        "one record's worth of bytes"
    );
    assert_eq!(s.stats().corrupt_estimated(), 1, "its length was lost");
    assert_eq!(
        s.stats().corrupt_bytes(),
        RECORD_HEADER_LEN + message(100).len() as u64
    );
}

#[test]
fn damage_spanning_several_records_counts_each_of_them() {
    let dir = TempDir::new("resync-span");
    let n = 300;
    let seg = one_segment(dir.path(), n);
    let mut bytes = fs::read(&seg).unwrap();
    // The payloads of messages 10, 11 and 12 damaged, their lengths intact.
    for i in 10..13 {
        let at = record_start(i) + RECORD_HEADER_LEN as usize + 3;
        bytes[at] ^= 1;
    }
    fs::write(&seg, bytes).unwrap();

    let mut s = open(dir.path(), SpoolConfig::default());
    assert_eq!(drain(&mut s).len(), n as usize - 3);
    assert_eq!(s.stats().dropped_corrupt(), 3);
    assert_eq!(s.stats().corrupt_estimated(), 0);
}

#[test]
fn damage_found_while_reading_is_skipped_to_the_next_record_and_counted() {
    let dir = TempDir::new("resync-read");
    let n = 200;
    let mut s = open(dir.path(), SpoolConfig::default());
    for i in 0..n {
        s.append(&message(i)).unwrap();
    }
    s.flush().unwrap();
    // The disk changes under the open spool (the head segment).
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[record_start(150) + 20] ^= 0x10;
    fs::write(&seg, bytes).unwrap();
    let got = drain(&mut s);
    let want: Vec<_> = (0..n).filter(|&i| i != 150).map(message).collect();
    assert_eq!(got, want);
    assert_eq!(s.stats().dropped_corrupt(), 1);
    // Appending goes on after the damage.
    s.append(&message(n)).unwrap();
    s.flush().unwrap();
    assert_eq!(drain(&mut s), vec![message(n)]);
}

#[test]
fn a_tail_of_zeros_is_not_a_run_of_empty_messages() {
    // What a power cut can leave: the file grew, its last blocks never written.
    let dir = TempDir::new("zeros");
    let seg = one_segment(dir.path(), 10);
    let len = fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len + 4096).unwrap();
    drop(f);
    let mut s = open(dir.path(), SpoolConfig::default());
    assert_eq!(drain(&mut s), (0..10).map(message).collect::<Vec<_>>());
    assert_eq!(s.stats().corrupt_bytes(), 4096);
    assert!(s.stats().dropped_corrupt() >= 1, "counted as lost");
    assert_eq!(fs::metadata(&seg).unwrap().len(), len, "cut off");
}
