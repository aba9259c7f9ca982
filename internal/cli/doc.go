// Package cli is the command-line surface of sr-wrapper, srctl and
// sr-registry: the kong flag structs and their parsing, the parsing of tags
// and key=value lists, and the validation that turns flags into a Config
// before anything is started.
//
// Every rule the registry would enforce is checked here first, so that a bad
// flag costs one clear line and exit status 2 instead of a child started
// and then stopped. It does not start processes or talk to registries.
package cli
