//! The engine in-process on a clock the test moves: when a token becomes due, throttling and
//! renewal follow the clock alone, with no sleeping.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use deepvue_rotator::app::App;
use deepvue_rotator::core::clock::ManualClock;
use deepvue_rotator::core::result::{Outcome, OutcomeKind};
use deepvue_rotator::core::store::Version;
use deepvue_rotator::engine::rotator::RunOptions;

use crate::scenarios::{FileFixture, Fixture, valid_credentials};
use crate::support::Env;

#[tokio::test]
async fn a_token_is_renewed_when_the_clock_reaches_expiry_minus_renew_before() {
    let t0 = Utc::now().trunc_subsecs(0) + chrono::Duration::days(3);
    let clock = Arc::new(ManualClock::at(t0));
    let env = Env::on(Default::default(), Some(clock.clone())).await;
    let fx = FileFixture::start();
    let creds = fx.credentials(Some(&valid_credentials())).await;
    let store = fx.store().await;
    let text = format!(
        "{}[rotation]\nrenew_before = \"12h\"\nmin_interval = \"10m\"\n\n[[tokens]]\nname = \"prod\"\ncredentials = {}\nstore = {}\n",
        env.deepvue_section(""),
        creds.toml,
        store.toml
    );
    let config =
        deepvue_rotator::config::parse(&text, "engine test").unwrap_or_else(|e| panic!("{e}"));
    let app = App::on_clock(config, clock.clone());
    let pass = |opts| {
        let app = &app;
        async move { app.rotator.rotate_all(&app.jobs, opts).await.remove(0) }
    };
    let kind = |r: &deepvue_rotator::core::result::RunResult| r.outcome.kind();

    // First run at t0: minted, expiring 24 h after the (manual) time it was sent.
    let r = pass(RunOptions::default()).await;
    assert_eq!(kind(&r), OutcomeKind::Rotated, "{r:?}");
    assert_eq!(r.expiry(), Some(t0 + chrono::Duration::hours(24)), "{r:?}");
    assert_eq!(env.calls(), 1);

    // 11 h 59 m later: still 12 h 1 m left, fresh.
    clock.advance(chrono::Duration::minutes(11 * 60 + 59));
    let r = pass(RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Fresh, "{r:?}");
    assert_eq!(env.calls(), 1);

    // Two minutes on: within renew_before, renewed; the previous version is kept.
    clock.advance(chrono::Duration::minutes(2));
    let r = pass(RunOptions::default()).await;
    assert_eq!(
        r.outcome,
        Outcome::Rotated {
            previous: Some(Version("1".into()))
        },
        "{r:?}"
    );
    assert_eq!(env.calls(), 2);

    // A forced run five minutes later is not throttled: force ignores min_interval.
    clock.advance(chrono::Duration::minutes(5));
    let r = pass(RunOptions {
        force: deepvue_rotator::core::decide::Force::Always,
        ..RunOptions::default()
    })
    .await;
    assert_eq!(kind(&r), OutcomeKind::Rotated, "{r:?}");
    assert_eq!(env.calls(), 3);

    // The simulator now issues 1 h tokens: a fresh mint is already within renew_before, so
    // the next run inside min_interval is throttled, and one after it renews.
    env.sim.set_behavior(deepvue_rotator::simulator::Behavior {
        token_ttl_secs: 3600,
        ..Default::default()
    });
    clock.advance(chrono::Duration::hours(13));
    let r = pass(RunOptions::default()).await;
    assert_eq!(kind(&r), OutcomeKind::Rotated, "{r:?}");
    assert_eq!(env.calls(), 4);
    clock.advance(chrono::Duration::minutes(9));
    let r = pass(RunOptions::default()).await;
    assert!(
        matches!(r.outcome, Outcome::Throttled { .. }),
        "due but minted 9 min ago: {r:?}"
    );
    assert_eq!(env.calls(), 4, "throttled: nothing minted");
    clock.advance(chrono::Duration::minutes(2));
    let r = pass(RunOptions::default()).await;
    assert_eq!(kind(&r), OutcomeKind::Rotated, "{r:?}");
    assert_eq!(env.calls(), 5);
}
