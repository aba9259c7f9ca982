package registry_test

import (
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/registry"
)

func TestServiceValidate(t *testing.T) {
	tests := []struct {
		name    string
		svc     registry.Service
		wantErr string // "" for valid
	}{
		{"valid", registry.Service{ID: "web-1", Tags: []string{"www"}, Metadata: map[string]string{"port": "80"}}, ""},
		{"bare id", registry.Service{ID: "web-1"}, ""},
		{"bad id", registry.Service{ID: "a/b"}, "id must match"},
		{"bad tag", registry.Service{ID: "web-1", Tags: []string{""}}, "tags[0]"},
		{"bad metadata", registry.Service{ID: "web-1", Metadata: map[string]string{"k": ""}}, "metadata.k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.svc.Validate()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSessionOptionsValidateMetadata(t *testing.T) {
	if err := (registry.SessionOptions{Metadata: map[string]string{"host": "h1"}}).ValidateMetadata(); err != nil {
		t.Fatalf("valid metadata: %v", err)
	}
	err := registry.SessionOptions{Metadata: map[string]string{"host": ""}}.ValidateMetadata()
	if err == nil || !strings.HasPrefix(err.Error(), "session metadata") {
		t.Fatalf("empty value: %v, want an error naming the session metadata", err)
	}
}
