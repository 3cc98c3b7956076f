//! The tuning measurement worker alone (see `tune::worker`): reads a job on stdin, answers one
//! JSON line on stdout.

fn main() {
    std::process::exit(tune::worker::main());
}
