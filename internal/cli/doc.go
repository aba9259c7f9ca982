// Package cli is sr-wrapper's command line, and what every command line of
// the repository shares: parsing with kong (Parse), the registry
// connection flags that sr-wrapper and srctl both read, and the parsing of
// tags and key=value lists. srctl's own grammar lives in internal/srctl,
// sr-registry's in its main.
//
// Every rule the registry would enforce is checked here first, so that a
// bad flag costs one clear line and exit status 2 instead of a child
// started and then stopped. It returns plain, validated data
// (WrapperConfig); it builds nothing, starts no process and talks to no
// registry.
package cli
