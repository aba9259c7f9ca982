// Command sr-wrapper-etcd is sr-wrapper with the etcd backend linked in.
// sr-wrapper execs it when --registry is etcd://; it can also be run
// directly. See README.md.
package main

import (
	"os"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcd"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/wrapper"
)

func main() {
	os.Exit(wrapper.Main(os.Args[1:], wrapper.Backends{
		Etcd: func(cfg etcdconf.Config, log *zap.Logger) (registry.Registry, error) {
			cfg.Logger = log
			return etcd.New(cfg)
		},
	}))
}
