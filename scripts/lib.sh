# Shared by scripts/quickstart and scripts/test: install what a fresh machine lacks.

# The cargo target folder lives outside the clone so rebuilds are shared across clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq >/dev/null
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if [ -n "${WEIR_PG_BINDIR:-}" ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    return
  fi
  echo "==> installing Postgres server binaries (Debian package postgresql)"
  apt_install postgresql
}

ensure_curl() {
  command -v curl >/dev/null 2>&1 || { echo "==> installing curl"; apt_install curl; }
}

# The TLS tests make a throwaway CA with the openssl command.
ensure_openssl() {
  command -v openssl >/dev/null 2>&1 || { echo "==> installing openssl"; apt_install openssl; }
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || {
    echo "cargo is not installed; install a Rust toolchain (https://rustup.rs) and retry" >&2
    exit 1
  }
}

# The official OpenAI and Anthropic Python SDKs, used by the end-to-end tests as real clients,
# and the Helm engine (helm-python-sdk) with PyYAML for the chart tests.
WEIR_VENV="${WEIR_VENV:-$HOME/.cache/weir/venv}"
ensure_python_sdks() {
  if [ ! -x "$WEIR_VENV/bin/python" ]; then
    echo "==> creating $WEIR_VENV"
    python3 -m venv "$WEIR_VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$WEIR_VENV"; }
  fi
  if ! "$WEIR_VENV/bin/python" -c 'import openai, anthropic, helm_python, yaml' >/dev/null 2>&1; then
    echo "==> installing the OpenAI and Anthropic Python SDKs, helm-python-sdk and PyYAML"
    "$WEIR_VENV/bin/pip" install -q --disable-pip-version-check openai anthropic helm-python-sdk pyyaml
  fi
  export WEIR_TEST_PYTHON="$WEIR_VENV/bin/python"
}

random_token() {
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'
}
