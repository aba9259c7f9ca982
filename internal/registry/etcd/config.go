package etcd

import "github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"

// Config describes how to reach etcd and where to keep the keys; see
// package etcdconf, which holds it so that it can be validated without
// linking the etcd client.
type Config = etcdconf.Config

// Defaults, as in etcdconf.
const (
	DefaultPrefix      = etcdconf.DefaultPrefix
	DefaultDialTimeout = etcdconf.DefaultDialTimeout
	DefaultCallTimeout = etcdconf.DefaultCallTimeout
)

// ParseURL parses an etcd:// or etcds:// registry URL (see etcdconf.ParseURL).
func ParseURL(s string) (Config, error) { return etcdconf.ParseURL(s) }
