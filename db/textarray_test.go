package db_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/patchfleet/patchfleet/db/pgtest"
)

// A []string goes to PostgreSQL as text[] through the pool's own encoding, as a parameter and
// by COPY, and comes back the same: empty strings, quotes, backslashes, commas, braces, the
// word NULL, non-ASCII and long elements; an empty slice is an empty array, nil is NULL.
func TestTextArrays(t *testing.T) {
	pool := pgtest.New(t, "textarrays", nil)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if typ, ok := conn.Conn().TypeMap().TypeForOID(pgtype.TextArrayOID); !ok || fmt.Sprintf("%T", typ.Codec) != "db.textArrayCodec" {
		t.Fatalf("text[] is encoded by %T, not the pool's own codec", typ.Codec)
	}

	values := [][]string{
		{"host-1", "", `say "hi"`, `back\slash`, "a,b", "{x}", "NULL", "grüße", strings.Repeat("x", 70_000)},
		{},
		nil,
	}
	if _, err := conn.Exec(ctx, "create table arrays (k int primary key, v text[])"); err != nil {
		t.Fatal(err)
	}
	var rows [][]any
	for i, v := range values {
		var back []string
		var isNull bool
		var n int
		if err := conn.QueryRow(ctx, "select $1::text[], $1::text[] is null, coalesce(cardinality($1::text[]), -1)", v).Scan(&back, &isNull, &n); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if isNull != (v == nil) || n != map[bool]int{true: -1, false: len(v)}[v == nil] || !slices.Equal(back, v) {
			t.Errorf("%d: sent %d elements (nil %t), the server has %d (null %t), read back %d", i, len(v), v == nil, n, isNull, len(back))
		}
		rows = append(rows, []any{i, v})
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"arrays"}, []string{"k", "v"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		var back []string
		if err := conn.QueryRow(ctx, "select v from arrays where k = $1", i).Scan(&back); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(back, v) || (back == nil) != (v == nil) {
			t.Errorf("copied %d: read back %d elements (nil %t), want %d (nil %t)", i, len(back), back == nil, len(v), v == nil)
		}
	}
	var quoted bool
	if err := conn.QueryRow(ctx, `select $1::text[] = array['say "hi"', 'back\slash', 'NULL']`, []string{`say "hi"`, `back\slash`, "NULL"}).Scan(&quoted); err != nil || !quoted {
		t.Errorf("the elements are not the strings sent (%v)", err)
	}
}
