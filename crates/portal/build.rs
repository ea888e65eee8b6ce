//! Decides at build time whether the end-to-end journeys' PostgreSQL variants are real tests or
//! ignored ones: a test harness cannot skip a test at run time, and a variant that returned
//! early without a database would be counted as passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(journeys_on_postgres)");
    println!("cargo::rustc-check-cfg=cfg(journeys_on_replica)");
    println!("cargo::rerun-if-env-changed=TEST_REPLICA_URL");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=CI");
    // Under CI the variants always run, so that a missing database fails the build's tests.
    if std::env::var_os("TEST_DATABASE_URL").is_some() || std::env::var_os("CI").is_some() {
        println!("cargo::rustc-cfg=journeys_on_postgres");
    }
    // The replica journeys need a streaming standby of TEST_DATABASE_URL's server; .ci/run makes
    // one. Without it they are ignored with their reason, under CI too.
    if std::env::var_os("TEST_REPLICA_URL").is_some() {
        println!("cargo::rustc-cfg=journeys_on_replica");
    }
}
