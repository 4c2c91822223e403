//! The core micro-benchmarks' figures, read from divan's output
//! (`cargo bench -p lameduck-core --bench lifecycle`, run by `bench/run.sh`
//! just before the runner).

/// One benchmark row: its median time and, per iteration, the median
/// allocation and reallocation ("grow") counts.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) median: String,
    pub(crate) allocs: String,
    pub(crate) grows: String,
}

/// The cells of `line`, cut at the header's column separators (divan
/// aligns every line to them; tree continuation marks may sit in the first
/// cell).
fn cells(line: &str, seps: &[usize]) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut cells = Vec::with_capacity(seps.len() + 1);
    let mut from = 0;
    for &sep in seps.iter().chain(std::iter::once(&usize::MAX)) {
        let to = sep.min(chars.len());
        let cell: String = chars.get(from.min(to)..to).unwrap_or(&[]).iter().collect();
        cells.push(
            cell.trim_matches(|c: char| c.is_whitespace() || "│├╰─".contains(c))
                .to_owned(),
        );
        from = sep.saturating_add(1);
    }
    cells
}

/// Rows of `text`: `connection_cycle`, and `shutdown_idle/N` for each N.
/// Columns: name and fastest │ slowest │ median │ mean │ samples │ iters.
pub(crate) fn parse(text: &str) -> Vec<Row> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(header) = lines
        .iter()
        .position(|l| l.contains("fastest") && l.contains("median"))
    else {
        return Vec::new();
    };
    let seps: Vec<usize> = lines[header]
        .chars()
        .enumerate()
        .filter(|(_, c)| *c == '│')
        .map(|(i, _)| i)
        .collect();
    let is_row = |l: &str| l.contains("├─") || l.contains("╰─");
    let mut rows = Vec::new();
    let mut group = String::new();
    let mut i = header + 1;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if !is_row(line) {
            continue;
        }
        let row_cells = cells(line, &seps);
        let Some(name) = row_cells.first().and_then(|c| c.split_whitespace().next()) else {
            continue;
        };
        let name = name.to_owned();
        let median = row_cells.get(2).cloned().unwrap_or_default();
        // A group header (no figures of its own): shutdown_idle.
        if median.is_empty() {
            group = name;
            continue;
        }
        let name = if name.chars().all(|c| c.is_ascii_digit()) && !group.is_empty() {
            format!("{group}/{name}")
        } else {
            name
        };
        let mut row = Row {
            name,
            median,
            allocs: "0".into(),
            grows: "0".into(),
        };
        // Its allocation rows: a label line, then a count line and a bytes
        // line (the median is the third figure).
        while i + 1 < lines.len() && !is_row(lines[i]) && !lines[i].trim().is_empty() {
            let label = cells(lines[i], &seps).first().cloned().unwrap_or_default();
            let count = cells(lines[i + 1], &seps)
                .get(2)
                .cloned()
                .unwrap_or_default();
            if label == "alloc:" {
                row.allocs = count;
            } else if label == "grow:" {
                row.grows = count;
            }
            i += 1;
        }
        rows.push(row);
    }
    rows
}
