# sr-wrapper — the commands that matter are `make demo` and `make test`.

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG       := github.com/sr-wrapper/sr-wrapper
LDFLAGS   := -s -w -X $(PKG)/internal/buildinfo.version=$(VERSION) -X $(PKG)/internal/buildinfo.commit=$(COMMIT) -X $(PKG)/internal/buildinfo.date=$(DATE)
CMDS      := sr-wrapper sr-wrapper-etcd sr-registry srctl
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build demo demo-cluster test test-deps lint unit fuzz bench release screenshots clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# A registry, a wrapper around a real program, the service appearing and
# disappearing. Needs nothing but Go.
demo: build
	./scripts/demo.sh

# The registry as a cluster: three etcd members (Debian's etcd-server, which
# make test-deps installs), three sr-registry frontends, a wrapped program
# that stays registered when the frontend it uses is killed.
demo-cluster: build
	./scripts/demo-cluster.sh

# Everything CI runs: system packages the integration tests need, lint, and
# every test with the race detector.
test: test-deps lint unit

test-deps:
	./scripts/test-deps.sh

lint:
	@out=$$(gofmt -l . | grep -v '^testdata/fuzz' || true); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./... ./testdata/fakeproc
	$(GO) run $(STATICCHECK) ./... ./testdata/fakeproc

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

# Short fuzzing runs of every parser that reads outside input.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseKeyValues$$' -fuzztime $(FUZZTIME) ./internal/cli
	$(GO) test -run '^$$' -fuzz '^FuzzParseTags$$' -fuzztime $(FUZZTIME) ./internal/cli
	$(GO) test -run '^$$' -fuzz '^FuzzFastParseMatchesKong$$' -fuzztime $(FUZZTIME) ./internal/cli
	$(GO) test -run '^$$' -fuzz '^FuzzRegistryURLs$$' -fuzztime $(FUZZTIME) ./internal/registry/srapi
	$(GO) test -run '^$$' -fuzz '^FuzzServiceIDMatchesRule$$' -fuzztime $(FUZZTIME) ./internal/api
	$(GO) test -run '^$$' -fuzz '^FuzzParseCommand$$' -fuzztime $(FUZZTIME) ./internal/health
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/hostaddr
	$(GO) test -run '^$$' -fuzz '^FuzzParseRoutes$$' -fuzztime $(FUZZTIME) ./internal/hostaddr
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzRequestEtcd$$' -fuzztime $(FUZZTIME) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzFastHeartbeatToken$$' -fuzztime $(FUZZTIME) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzParseCredentials$$' -fuzztime $(FUZZTIME) ./internal/server
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/server/ratelimit

bench:
	./scripts/bench.sh

# The README's pictures of the dashboard, taken by its browser test from a
# realistic state (needs chromium; pngquant, when installed, shrinks them).
screenshots:
	SR_README_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run '^TestReadmeScreenshots$$' ./internal/dashboard
	if command -v pngquant >/dev/null; then pngquant --force --skip-if-larger --strip --ext .png docs/dashboard*.png; fi

# Static linux/amd64 and linux/arm64 binaries with version, commit and date
# (--version prints them) in $(DIST), with their SHA256SUMS. DIST may be any
# directory; internal/packaging's test builds into a temporary one.
DIST      ?= dist
RELEASE_ARCHES := amd64 arm64
release:
	@mkdir -p $(DIST)
	for arch in $(RELEASE_ARCHES); do \
	  for cmd in $(CMDS); do \
	    CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/$$cmd-linux-$$arch ./cmd/$$cmd || exit 1; \
	  done; \
	done
	cd $(DIST) && sha256sum $(foreach arch,$(RELEASE_ARCHES),$(addsuffix -linux-$(arch),$(CMDS))) > SHA256SUMS

clean:
	rm -rf $(BIN) dist
