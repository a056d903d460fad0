//! How `depot stat` and `depot stats` show a record to a person: one
//! field a line, sizes in bytes and in binary units. (`--json` prints the
//! API's record instead.)

use depot::client::human;
use depot::wire::{FileInfo, StatsInfo};

/// `depot stat`: a file's record.
pub fn file(f: &FileInfo) -> String {
    let mut text = format!(
        "id            {}\nname          {}\nsize          {} ({})\ncontent type  {}\n\
         created       {}\nchunks        {}\netag          {}",
        f.id,
        f.name,
        f.size,
        human(f.size),
        f.content_type,
        f.created,
        f.chunks,
        f.etag
    );
    if let Some(d) = f.deduplicated_bytes {
        // What deduplication saved this file when it was stored.
        text.push_str(&format!("\ndedup saving  {d} ({})", human(d)));
    }
    if let Some(h) = &f.content_hash {
        text.push_str(&format!("\nblake3        {h}"));
    }
    text
}

/// `depot stats`: the store's (or the tenant's) counters and ratios.
pub fn stats(st: &StatsInfo) -> String {
    let ratio = |r: Option<f64>| match r {
        Some(r) => format!("{r:.3}"),
        None => "n/a (no file content yet)".into(),
    };
    format!(
        "files          {}\nlogical bytes  {} ({})\nunique chunks  {}\nunique bytes   {} ({})\n\
         stored bytes   {} ({})\ndedup ratio    {}   (logical / unique bytes)\n\
         space ratio    {}   (logical / stored bytes)",
        st.files,
        st.logical_bytes,
        human(st.logical_bytes),
        st.unique_chunks,
        st.unique_bytes,
        human(st.unique_bytes),
        st.stored_bytes,
        human(st.stored_bytes),
        ratio(st.dedup_ratio),
        ratio(st.space_ratio)
    )
}
