package etcdstore

import (
	"context"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// A token's key stamp is shared like the rest of it: a frontend that did
// not issue it reads the stamp back; a login under another stamp gets a
// new token, not the one issued under the old key; and a token stored by
// a frontend older than stamps reads back with none.
func TestTokenStampsAreShared(t *testing.T) {
	c := etcdtest.StartSingle(t)
	a, b := openReady(t, c, "/tokens"), openReady(t, c, "/tokens")
	ctx := context.Background()

	tok, err := a.IssueToken(ctx, "alice", "t1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.LookupToken(ctx, tok.ID)
	if err != nil || got.User != "alice" || got.Tenant != "t1" || got.Stamp != "s1" {
		t.Fatalf("b's lookup of a's token: %+v, %v; want alice of t1 under s1", got, err)
	}
	again, err := a.IssueToken(ctx, "alice", "t1", "s1")
	if err != nil || again.ID != tok.ID {
		t.Fatalf("a second login under the same stamp: %+v, %v; want the same token back", again, err)
	}
	rotated, err := a.IssueToken(ctx, "alice", "t1", "s2")
	if err != nil || rotated.ID == tok.ID || rotated.Stamp != "s2" {
		t.Fatalf("a login under a new stamp: %+v, %v; want a new token under s2", rotated, err)
	}

	// What a frontend older than stamps stored.
	const legacyID = "legacy-token"
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	raw := `{"user":"bob","tenant":"t2","expires":"` + expires.Format(time.RFC3339) + `"}`
	if _, err := a.cli.Put(ctx, a.keys.token(tokenHash(legacyID)), raw); err != nil {
		t.Fatal(err)
	}
	got, err = b.LookupToken(ctx, legacyID)
	if want := (store.Token{ID: legacyID, User: "bob", Tenant: "t2", Expires: expires}); err != nil || got.Stamp != "" || got.User != want.User || got.Tenant != want.Tenant || !got.Expires.Equal(expires) {
		t.Fatalf("a token stored without a stamp: %+v, %v; want %+v", got, err, want)
	}
}
