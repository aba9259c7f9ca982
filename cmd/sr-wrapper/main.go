// Command sr-wrapper runs a program as its child and keeps it registered in
// a service registry for exactly as long as it lives. See README.md.
//
// It links only the HTTP backend, so that it starts fast and small; an
// etcd:// registry hands over to sr-wrapper-etcd.
package main

import (
	"os"

	"github.com/sr-wrapper/sr-wrapper/internal/wrapper"
)

func main() {
	os.Exit(wrapper.Main(os.Args[1:], wrapper.Backends{}))
}
