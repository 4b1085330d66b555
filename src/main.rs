fn main() {
    // `wsgi-app supervise <run_dir>`: the direct supervisor (see charm::supervisor).
    if let Some(code) = wsgi_app::charm::supervisor::maybe_run_from_args() {
        std::process::exit(code);
    }
    // Otherwise: one hook dispatch (written by the integrator).
}
