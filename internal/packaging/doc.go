// Package packaging holds the tests of the packaging promises: that the
// shipped Dockerfile, systemd unit, supervisord program section and
// `make release` do what README.md says, checked with real processes
// (a static sr-wrapper as PID 1 of a new PID namespace in an otherwise
// empty root, Debian's supervisord, the Makefile's cross builds) rather
// than by reading the files alone.
//
// It is not a library: it has no code outside its _test.go files, and
// nothing imports it. The tests skip, saying why, where a prerequisite is
// missing (root for namespaces, unshare, supervisord, make); CI runs them
// as root after scripts/test-deps.sh has installed those.
package packaging
