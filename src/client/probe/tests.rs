use super::*;
use crate::testdata::pseudo_random;

/// A run of `len` bytes at `start` of the new file, between guesses into
/// seed 0: the chunk before it ends at `front` there, the chunk after it
/// starts at `back`.
fn between(start: u64, len: u64, front: u64, back: u64) -> Run {
    Run {
        start,
        len,
        front: Some(Guess::Front { seed: 0, at: front }),
        back: Some(Guess::Back { seed: 0, at: back }),
    }
}

/// Seeds held in memory.
struct Mem(Vec<Vec<u8>>);

impl SeedRead for Mem {
    fn read_at(&mut self, seed: usize, offset: u64, buf: &mut [u8]) -> bool {
        let Some(s) = self.0.get(seed) else { return false };
        let Some(src) = s.get(offset as usize..offset as usize + buf.len()) else { return false };
        buf.copy_from_slice(src);
        true
    }

    fn len(&mut self, seed: usize) -> u64 {
        self.0.get(seed).map_or(0, |s| s.len() as u64)
    }
}

/// Runs the search as [`locate`] does, with the server's answers taken
/// from `file`; returns the plan and how many probe bytes were asked for.
fn search(run: Run, file: &[u8], seeds: &mut Mem) -> (Plan, u64, usize) {
    let front = run.front.map(|g| Edge::new(g, run.len, seeds));
    let back = run.back.map(|g| Edge::new(g, run.len, seeds));
    let mut s = Search { run, front, back };
    let (mut asked, mut rounds) = (0, 0);
    for _ in 0..ROUNDS {
        let ranges = merged(s.probes());
        if ranges.is_empty() {
            break;
        }
        rounds += 1;
        let mut known = Known::default();
        for r in ranges {
            asked += r.end - r.start;
            known.insert(r.start, Bytes::copy_from_slice(&file[r.start as usize..r.end as usize]));
        }
        s.update(&known, seeds);
    }
    (s.plan(), asked, rounds)
}

/// Puts the run together as the caller does.
fn assemble(run: &Run, plan: Plan, file: &[u8], seeds: &Mem) -> Vec<u8> {
    let mut out = file[run.start as usize..(run.start + run.len) as usize].to_vec();
    let fetch = plan.fetch(run.len);
    if let Some(Guess::Front { seed, at }) = run.front {
        out[..fetch.start as usize].copy_from_slice(&seeds.0[seed][at as usize..(at + fetch.start) as usize]);
    }
    if let Some(Guess::Back { seed, at }) = run.back {
        let n = (run.len - fetch.end) as usize;
        out[fetch.end as usize..].copy_from_slice(&seeds.0[seed][at as usize - n..at as usize]);
    }
    out
}

#[test]
fn an_insertion_costs_its_bytes_and_a_little_around_it() {
    let old = pseudo_random(4 << 20, 1);
    let (at, ins) = (1_000_000usize, 300_000usize);
    let mut new = old.clone();
    new.splice(at..at, pseudo_random(ins, 2));
    // A run from 900,000 to 1,500,000 of the new file: the chunk before it
    // ends at 900,000 in the seed, the chunk after it starts at 1,200,000.
    let run = between(900_000, 600_000, 900_000, 1_200_000);
    let mut seeds = Mem(vec![old]);
    let (plan, asked, rounds) = search(run.clone(), &new, &mut seeds);
    let fetch = plan.fetch(run.len);
    // The edit is [100,000, 400,000) of the run.
    assert!(fetch.start <= 100_000 && fetch.start + FINE >= 100_000, "{plan:?}");
    assert!(fetch.end >= 400_000 && fetch.end <= 400_000 + FINE, "{plan:?}");
    assert!(asked < 2 * ROUNDS as u64 * PROBES * PROBE, "asked {asked}");
    assert!(rounds <= 5, "{rounds} rounds");
    assert_eq!(assemble(&run, plan, &new, &seeds), new[900_000..1_500_000]);
}

#[test]
fn a_changed_byte_is_found_when_a_probe_lands_on_it() {
    let old = pseudo_random(1 << 20, 3);
    let run = between(200_000, 200_000, 200_000, 400_000);
    let mut seeds = Mem(vec![old.clone()]);
    // The front edge's first round probes bytes 100,000.. of the run.
    let mut new = old.clone();
    new[300_010] ^= 1;
    let (plan, _, _) = search(run.clone(), &new, &mut seeds);
    let fetch = plan.fetch(run.len);
    assert!(fetch.contains(&100_010), "{plan:?}");
    assert!(fetch.end - fetch.start <= 2 * FINE, "{plan:?}");
    assert_eq!(assemble(&run, plan, &new, &seeds), new[200_000..400_000]);

    // Between the probes a changed byte is not seen (only an edit that
    // shifts the bytes after it is seen from every probe past it): the
    // run put together is wrong, which the caller's hash check catches.
    let mut new = old.clone();
    new[300_500] ^= 1;
    let (plan, _, _) = search(run.clone(), &new, &mut seeds);
    assert_ne!(assemble(&run, plan, &new, &seeds), new[200_000..400_000]);
}

#[test]
fn one_sided_and_failing_guesses() {
    let old = pseudo_random(1 << 20, 4);
    let new = pseudo_random(1 << 20, 5);
    // Nothing matches: the guesses take nothing.
    let run = between(0, 500_000, 10, 600_000);
    let mut seeds = Mem(vec![old.clone()]);
    let (plan, _, _) = search(run.clone(), &new, &mut seeds);
    assert!(plan.front < FINE && plan.back < FINE, "{plan:?}");
    assert_eq!(assemble(&run, plan, &new, &seeds), new[..500_000]);

    // A front guess that holds to the end of the run, and past the seed's
    // end (it cannot match there).
    let mut grown = old.clone();
    grown.extend_from_slice(&pseudo_random(100_000, 6));
    let run =
        Run { start: 800_000, len: 348_576, front: Some(Guess::Front { seed: 0, at: 800_000 }), back: None };
    let (plan, _, _) = search(run.clone(), &grown, &mut seeds);
    assert!(plan.front <= 248_576 && plan.front + FINE >= 248_576, "{plan:?}");
    assert_eq!(plan.back, 0);
    assert_eq!(assemble(&run, plan, &grown, &seeds), grown[800_000..]);

    // A seed that cannot be read guesses nothing.
    let run = Run { start: 0, len: 100_000, front: Some(Guess::Front { seed: 7, at: 0 }), back: None };
    let (plan, _, rounds) = search(run, &old, &mut seeds);
    assert_eq!((plan, rounds), (Plan { front: 0, back: 0 }, 0));
}

#[test]
fn overlapping_edges_share_the_run() {
    // Bytes deleted: both guesses hold up to the cut, and may overlap.
    let old = pseudo_random(1 << 20, 8);
    let mut new = old.clone();
    new.drain(500_000..500_100);
    let run = between(400_000, 199_900, 400_000, 600_000);
    let mut seeds = Mem(vec![old]);
    let (plan, _, _) = search(run.clone(), &new, &mut seeds);
    assert!(plan.front + plan.back <= run.len);
    assert!(run.len - plan.front - plan.back <= 2 * FINE, "{plan:?}");
    assert_eq!(assemble(&run, plan, &new, &seeds), new[400_000..599_900]);
}

#[test]
fn ranges_merge_as_the_server_would() {
    assert_eq!(merged(vec![10..20, 0..5, 5..7, 15..30, 40..40, 50..51]), vec![0..7, 10..30, 50..51]);
}

#[test]
fn known_bytes_come_from_one_part() {
    let mut k = Known::default();
    k.insert(100, Bytes::from_static(b"abcdef"));
    k.insert(200, Bytes::from_static(b"xyz"));
    assert_eq!(k.get(101..104), Some(&b"bcd"[..]));
    assert_eq!(k.get(200..203), Some(&b"xyz"[..]));
    assert_eq!(k.get(104..107), None);
    assert_eq!(k.get(50..60), None);
    assert_eq!(k.get(199..201), None);
}

#[test]
fn multipart_byteranges_parse() {
    let b = "depot-0123";
    let body = format!(
        "\r\n--{b}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 10-13/100\r\n\r\nab\r\n\
         \r\n--{b}\r\ncontent-range: bytes 50-50/100\r\n\r\nZ\r\n--{b}--\r\n"
    );
    // "ab\r\n" is the first part's four bytes: a part's data may hold CRLF.
    let parts = byteranges(&Bytes::from(body), b).unwrap();
    assert_eq!(parts, vec![(10, Bytes::from_static(b"ab\r\n")), (50, Bytes::from_static(b"Z"))]);
    assert_eq!(boundary("multipart/byteranges; boundary=\"depot-0123\""), Some("depot-0123".into()));
    assert_eq!(boundary("multipart/form-data; boundary=x"), None);
    assert_eq!(content_range_start("bytes 5-9/10"), Some(5..10));
    assert_eq!(content_range_start("bytes 9-5/10"), None);
    // Truncated or mislabelled bodies do not parse.
    for bad in [
        format!("--{b}\r\nContent-Range: bytes 0-9/100\r\n\r\nshort"),
        format!("--{b}\r\nContent-Range: bytes 0-1/100\r\n\r\nabX--{b}--"),
        format!("--{b}\r\nContent-Type: x\r\n\r\nab\r\n--{b}--"),
        "nothing".to_string(),
    ] {
        assert_eq!(byteranges(&Bytes::from(bad.clone()), b), None, "{bad}");
    }
}
