//! The Python client of `examples/python` and its pytest suite (`tests/python`), run against the
//! real binary: `examples/python/setup.sh` installs grpcio, grpcio-tools, cryptography and
//! pytest from the package registry and generates the stubs from `proto/` (CI runs it up front;
//! here again, which is quick once done), then pytest checks health, reflection, the example
//! end to end, and a checkpoint signature refused after one flipped bit.

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_client_and_its_tests_pass_against_the_real_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let setup = Command::new("bash").arg(root.join("examples/python/setup.sh")).output().expect("run setup.sh");
    assert!(
        setup.status.success(),
        "examples/python/setup.sh failed:\n{}{}",
        String::from_utf8_lossy(&setup.stdout),
        String::from_utf8_lossy(&setup.stderr)
    );
    let run = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/python"])
        .current_dir(root)
        .env("PAX_LEDGER_BIN", env!("CARGO_BIN_EXE_pax-ledger"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    assert!(
        run.status.success(),
        "pytest failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
