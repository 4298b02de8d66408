use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "farm-history-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite")
}

fn run(id: &str, state: &str, started: u64) -> RunSummary {
    summary(
        id,
        RunKind::LoadTest,
        format!("GET / {id}"),
        state,
        started,
        0,
        None,
        (0, 0),
    )
}

#[test]
fn runs_outlive_the_process_and_a_running_one_becomes_interrupted() {
    let path = scratch("reopen");
    {
        let (history, interrupted) = History::open(&path).unwrap();
        assert_eq!(interrupted, 0);
        history
            .put_run(&run("lt-1", "finished", 1), b"one")
            .unwrap();
        history.put_run(&run("lt-2", "running", 2), b"two").unwrap();
        history
            .put_run(&run("sc-7", "passed", 3), b"three")
            .unwrap();
    }
    let (history, interrupted) = History::open(&path).unwrap();
    assert_eq!(interrupted, 1);
    let stored = history.run("lt-2").unwrap().unwrap();
    assert_eq!(stored.summary.state, "interrupted");
    let page = history.runs(10, "", RunKind::Unspecified).unwrap().unwrap();
    let states: Vec<(&str, &str)> = page
        .runs
        .iter()
        .map(|r| (r.run_id.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("sc-7", "passed"),
            ("lt-2", "interrupted"),
            ("lt-1", "finished")
        ]
    );
    assert_eq!(history.last_run_number("lt-").unwrap(), 2);
    assert_eq!(history.last_run_number("sc-").unwrap(), 7);
    assert_eq!(history.run("lt-1").unwrap().unwrap().report, b"one");
}

#[test]
fn pages_go_from_newest_to_oldest_and_a_strange_token_is_none() {
    let (history, _) = History::open(&scratch("pages")).unwrap();
    for n in 1..=5 {
        history
            .put_run(&run(&format!("lt-{n}"), "finished", n), b"")
            .unwrap();
    }
    let first = history.runs(2, "", RunKind::Unspecified).unwrap().unwrap();
    assert_eq!(first.total, 5);
    assert_eq!(first.runs[0].run_id, "lt-5");
    let second = history
        .runs(2, first.next.as_deref().unwrap(), RunKind::Unspecified)
        .unwrap()
        .unwrap();
    assert_eq!(second.runs[0].run_id, "lt-3");
    let last = history
        .runs(2, second.next.as_deref().unwrap(), RunKind::Unspecified)
        .unwrap()
        .unwrap();
    assert_eq!(last.runs.len(), 1);
    assert_eq!(last.next, None);
    assert!(
        history
            .runs(2, "x", RunKind::Unspecified)
            .unwrap()
            .is_none()
    );
    let scenarios = history.runs(2, "", RunKind::Scenario).unwrap().unwrap();
    assert_eq!(scenarios.total, 0);
}

#[test]
fn runs_and_events_stay_within_their_bounds_oldest_dropped_first() {
    let (history, _) = History::open(&scratch("bounds")).unwrap();
    for n in 1..=MAX_RUNS + 5 {
        history
            .put_run(&run(&format!("lt-{n}"), "finished", n), b"")
            .unwrap();
    }
    let page = history.runs(1, "", RunKind::Unspecified).unwrap().unwrap();
    assert_eq!(page.total, MAX_RUNS);
    assert!(history.run("lt-5").unwrap().is_none());
    assert!(history.run("lt-6").unwrap().is_some());
    let events: Vec<NewEvent> = (0..MAX_EVENTS + 10)
        .map(|n| NewEvent {
            at_ms: n,
            server_id: 1,
            kind: "status".into(),
            detail: String::new(),
        })
        .collect();
    history.add_events(&events).unwrap();
    let (oldest, last) = history.events(0, 1, None, false).unwrap();
    assert_eq!(last, MAX_EVENTS + 10);
    assert_eq!(oldest[0].seq, 11, "the ten oldest were dropped");
    let (newest, _) = history.events(0, 3, Some(1), true).unwrap();
    let seqs: Vec<u64> = newest.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [MAX_EVENTS + 8, MAX_EVENTS + 9, MAX_EVENTS + 10]);
}

#[test]
fn seconds_become_minutes_and_old_points_go() {
    let (history, _) = History::open(&scratch("points")).unwrap();
    let start = 1_000_020; // a minute starts at 1_000_020 (a multiple of 60)
    for s in 0..130 {
        let sample = Sample {
            server_id: 3,
            cpu_percent: s as f64,
            memory_bytes: 100,
            requests_per_second: 10.0,
            errors_per_second: 0.0,
            healthy: 1.0,
        };
        history.add_samples(start + s, &[sample]).unwrap();
    }
    let now = start + 130;
    history.upkeep(now).unwrap();
    let (fine, resolution) = history
        .points(3, start * 1000, now * 1000, now * 1000)
        .unwrap();
    assert_eq!((fine.len(), resolution), (130, 1));
    // From more than an hour back: the minutes. Two whole minutes so far, their means.
    let (coarse, resolution) = history.points(3, 0, now * 1000, now * 1000).unwrap();
    assert_eq!(resolution, 60);
    let means: Vec<f64> = coarse.iter().map(|p| p.cpu_percent).collect();
    assert_eq!(means, [29.5, 89.5]);
    // An upkeep a day later sums the last minute too, keeps the minutes, drops the seconds.
    history.upkeep(now + 24 * 3600).unwrap();
    let (fine, _) = history
        .points(3, start * 1000, now * 1000, now * 1000)
        .unwrap();
    assert!(fine.is_empty());
    let (coarse, _) = history.points(3, 0, now * 1000, now * 1000).unwrap();
    let means: Vec<f64> = coarse.iter().map(|p| p.cpu_percent).collect();
    assert_eq!(means, [29.5, 89.5, 124.5]);
}

#[test]
fn a_damaged_a_foreign_and_a_newer_file_are_refused_and_left_as_they_were() {
    let damaged = scratch("damaged");
    std::fs::write(&damaged, b"this is not a database, only text").unwrap();
    let error = History::open(&damaged).unwrap_err().to_string();
    assert!(error.contains("is not a farm history"), "{error}");
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        b"this is not a database, only text"
    );

    let foreign = scratch("foreign");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    let error = History::open(&foreign).unwrap_err().to_string();
    assert!(error.contains("another program"), "{error}");

    let newer = scratch("newer");
    drop(History::open(&newer).unwrap());
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let error = History::open(&newer).unwrap_err().to_string();
    assert!(error.contains("newer farm"), "{error}");

    // A directory that cannot be made: its parent is a file.
    let blocked = scratch("blocked");
    std::fs::write(&blocked, b"").unwrap();
    let error = History::open(&blocked.join("inside").join("history.sqlite"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot open the farm's history"), "{error}");
}
