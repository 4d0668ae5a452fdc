# mk/identity.mk - the official @azure/identity as acscall.credential's reference.
#
# `make identity-fixtures` records the SDK's requests (tools/identity/record.sh: a temp dir, the
# pinned SDK from tools/identity/package-lock.json, a loopback capture server) into
# tools/identity/fixtures/sdk-requests.json, which spec/82 holds acscall's credentials to.
# `make test` installs the same pinned SDK into tools/identity/node_modules (npm ci) for
# spec/83, where the SDK gets a token from the emulator alone: without node and npm that spec
# fails (it is never skipped).

# nodejs (Debian's, or NodeSource's, which brings npm); Debian's own npm is package npm
DEB_PKGS += nodejs
IDENTITY_SDK = tools/identity/node_modules/.package-lock.json
NPM_CI_FLAGS = --no-audit --no-fund --loglevel=error

$(IDENTITY_SDK): tools/identity/package.json tools/identity/package-lock.json
	@command -v npm >/dev/null || { echo "identity: npm not found (apt-get install npm): spec/83 needs the SDK"; exit 1; }
	cd tools/identity && npm ci $(NPM_CI_FLAGS)

identity-sdk: $(IDENTITY_SDK)

# spec/83 needs the SDK installed: the suite's runs install it first (a prerequisite added to
# the Makefile's targets; their recipes are unchanged)
test test-asan: $(IDENTITY_SDK)

identity-fixtures: deps
	tools/identity/record.sh

.PHONY: identity-sdk identity-fixtures
