package wrapper

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/hostaddr"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// The address --advertise-ip selects joins the service's own metadata at
// registration, in a real registry; a selector that matches nothing fails
// the registration (not permanently, so the Keeper retries it) and
// registers nothing.
func TestAdvertisingRegistry(t *testing.T) {
	reg := registrytest.Start(t)
	tests := []struct {
		name     string
		selector string // "" for no --advertise-ip
		metadata map[string]string
		want     map[string]string // nil: the registration fails
	}{
		{name: "no selector", metadata: map[string]string{"dc": "lon"}, want: map[string]string{"dc": "lon"}},
		{name: "loopback interface", selector: "lo", metadata: map[string]string{"dc": "lon"},
			want: map[string]string{"dc": "lon", "ip": "127.0.0.1"}},
		{name: "CIDR, no metadata of its own", selector: "127.0.0.0/8", want: map[string]string{"ip": "127.0.0.1"}},
		// TEST-NET-3: on no interface of a test machine.
		{name: "nothing matches", selector: "203.0.113.0/24", metadata: map[string]string{"dc": "lon"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var sel hostaddr.Selector
			if tt.selector != "" {
				var err error
				if sel, err = hostaddr.Parse(tt.selector); err != nil {
					t.Fatal(err)
				}
			}
			user := "advertise-" + t.Name()[len("TestAdvertisingRegistry/"):]
			backend, err := srapi.New(srapi.Config{RegistryURL: reg.URL, Username: user, APIKey: "key"})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = backend.Close() }()
			sess, err := advertise(backend, sel).CreateSession(ctx, registry.SessionOptions{TTL: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sess.Close(ctx) }()
			err = sess.Register(ctx, registry.Service{ID: "web-1", Metadata: tt.metadata})
			client := registrytest.NewClient(t, reg.URL, "", user, "key")
			got, getErr := client.GetService(ctx, "web-1")
			if tt.want == nil {
				if !errors.Is(err, hostaddr.ErrNotFound) || registry.IsPermanent(err) {
					t.Errorf("Register = %v, want a transient error wrapping hostaddr.ErrNotFound", err)
				}
				if getErr == nil {
					t.Errorf("registered %+v without its address", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Register: %v", err)
			}
			if getErr != nil {
				t.Fatalf("GetService: %v", getErr)
			}
			if !maps.Equal(got.Metadata, tt.want) {
				t.Errorf("registered metadata %v, want %v", got.Metadata, tt.want)
			}
			if tt.metadata != nil && len(tt.metadata) != 1 {
				t.Errorf("the caller's metadata map was changed: %v", tt.metadata)
			}
		})
	}
}
