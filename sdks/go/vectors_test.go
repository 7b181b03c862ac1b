package taskstream

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// The shared vectors live in the repository's schemas/vectors (their format:
// schemas/vectors/README.md); this module is tested against them byte for byte.
const vectorsDir = "../../schemas/vectors"

type vectorFile struct {
	Format        int           `json:"format"`
	Record        string        `json:"record"`
	Schema        string        `json:"schema"`
	Version       *int          `json:"version"`
	Fingerprint   string        `json:"fingerprint"`
	ReadsAsSchema string        `json:"reads_as_schema"`
	Vectors       []vectorEntry `json:"vectors"`
}

type vectorEntry struct {
	Name    string          `json:"name"`
	Value   json.RawMessage `json:"value"`
	Bytes   string          `json:"bytes"`
	ReadsAs json.RawMessage `json:"reads_as"`
}

func loadVectorFiles(t *testing.T) map[string]vectorFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(vectorsDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no vector files in %s (%v)", vectorsDir, err)
	}
	files := map[string]vectorFile{}
	for _, path := range paths {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f vectorFile
		if err := json.Unmarshal(text, &f); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if f.Format != 1 {
			t.Fatalf("%s: vector file format %d, this test reads 1", path, f.Format)
		}
		files[filepath.Base(path)] = f
	}
	return files
}

func parseJSON(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// fromVectorJSON turns a vector's value (rules in schemas/vectors/README.md) into the Go
// values hamba/avro reads and writes for the schema.
func fromVectorJSON(t *testing.T, s avro.Schema, v any) any {
	t.Helper()
	switch s := s.(type) {
	case *avro.RefSchema:
		return fromVectorJSON(t, s.Schema(), v)
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("record %s: value %v is not an object", s.Name(), v)
		}
		if len(m) != len(s.Fields()) {
			t.Fatalf("record %s: value has %d fields, schema %d", s.Name(), len(m), len(s.Fields()))
		}
		out := map[string]any{}
		for _, f := range s.Fields() {
			fv, present := m[f.Name()]
			if !present {
				t.Fatalf("record %s: field %s missing from the value", s.Name(), f.Name())
			}
			out[f.Name()] = fromVectorJSON(t, f.Type(), fv)
		}
		return out
	case *avro.UnionSchema:
		if v == nil {
			return nil
		}
		types := s.Types()
		if len(types) != 2 || types[0].Type() != avro.Null {
			t.Fatalf("union %v is not [null, T]", s)
		}
		inner := fromVectorJSON(t, types[1], v)
		// A record in a union is a one-entry map keyed by its full name (hamba/avro's generic
		// form), a primitive the plain value.
		named := types[1]
		if ref, ok := named.(*avro.RefSchema); ok {
			named = ref.Schema()
		}
		if rec, ok := named.(*avro.RecordSchema); ok {
			return map[string]any{rec.FullName(): inner}
		}
		return inner
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			t.Fatalf("array: value %v is not a list", v)
		}
		out := make([]any, len(items))
		for i, item := range items {
			out[i] = fromVectorJSON(t, s.Items(), item)
		}
		return out
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.Long:
			n, err := v.(json.Number).Int64()
			if err != nil {
				t.Fatal(err)
			}
			return n
		case avro.Int:
			n, err := v.(json.Number).Int64()
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		case avro.Double:
			n, err := v.(json.Number).Float64()
			if err != nil {
				t.Fatal(err)
			}
			return n
		case avro.Bytes:
			b, err := hex.DecodeString(v.(string))
			if err != nil {
				t.Fatal(err)
			}
			return b
		case avro.String, avro.Boolean:
			return v
		}
	case *avro.NullSchema:
		return nil
	}
	t.Fatalf("schema type %v not in the contract", s.Type())
	return nil
}

func TestEveryVectorByteForByte(t *testing.T) {
	codec := DefaultCodec()
	files := loadVectorFiles(t)
	covered := map[string]bool{}
	for fileName, f := range files {
		schemaFile := filepath.Base(f.Schema)
		var s *Schema
		for _, cand := range codec.Schemas() {
			if cand.File == schemaFile {
				s = cand
			}
		}
		if s == nil {
			t.Errorf("%s: the codec has no schema %s", fileName, schemaFile)
			continue
		}
		covered[schemaFile] = true
		if "taskstream."+s.Name != f.Record {
			t.Errorf("%s: record %s, schema holds %s", fileName, f.Record, s.Name)
		}
		if s.Fingerprint.String() != f.Fingerprint {
			t.Errorf("%s: fingerprint %s, the codec computes %s", fileName, f.Fingerprint, s.Fingerprint)
		}
		if len(f.Vectors) == 0 {
			t.Errorf("%s: no vectors", fileName)
		}
		for _, v := range f.Vectors {
			name := fileName + "/" + v.Name
			data, err := hex.DecodeString(v.Bytes)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, body, err := codec.Header(data)
			if err != nil || got != s {
				t.Errorf("%s: header names %v (%v), want %s", name, got, err, s.File)
				continue
			}
			want := fromVectorJSON(t, s.Writer, parseJSON(t, v.Value))

			// Decode with the writer schema: the value.
			var decoded any
			if err := wire.Unmarshal(s.Writer, body, &decoded); err != nil {
				t.Errorf("%s: decode: %v", name, err)
				continue
			}
			if !reflect.DeepEqual(decoded, want) {
				t.Errorf("%s: decoded\n  %#v\nwant\n  %#v", name, decoded, want)
			}
			// Encode the value: the bytes.
			encoded, err := codec.EncodeAs(s, want)
			if err != nil {
				t.Errorf("%s: encode: %v", name, err)
			} else if !bytes.Equal(encoded, data) {
				t.Errorf("%s: encoded\n  %x\nwant\n  %x", name, encoded, data)
			}

			// An older version reads as reads_as under the current schema.
			if f.Version != nil {
				cur := codec.Current(s.Name)
				if filepath.Base(f.ReadsAsSchema) != cur.File {
					t.Errorf("%s: reads_as_schema %s, current is %s", name, f.ReadsAsSchema, cur.File)
				}
				var resolved any
				if _, err := codec.DecodeInto(data, &resolved); err != nil {
					t.Errorf("%s: resolve: %v", name, err)
					continue
				}
				readsAs := fromVectorJSON(t, cur.Writer, parseJSON(t, v.ReadsAs))
				if !reflect.DeepEqual(resolved, readsAs) {
					t.Errorf("%s: reads as\n  %#v\nwant\n  %#v", name, resolved, readsAs)
				}
			}

			// The SDK's typed struct (where it has one) decodes and re-encodes the same bytes.
			record, err := codec.Decode(data)
			if err != nil {
				t.Errorf("%s: typed decode: %v", name, err)
				continue
			}
			if _, generic := record.(*GenericRecord); generic || f.Version != nil {
				continue
			}
			again, err := codec.Encode(record)
			if err != nil {
				t.Errorf("%s: typed encode: %v", name, err)
			} else if !bytes.Equal(again, data) {
				t.Errorf("%s: typed %T encodes\n  %x\nwant\n  %x", name, record, again, data)
			}
		}
	}
	for _, s := range codec.Schemas() {
		if !covered[s.File] {
			t.Errorf("schema %s has no vector file", s.File)
		}
	}
}

// Typed structs decode the field values, not just the bytes: spot-check what a client meets.
func TestTypedVectorsReadTheirFields(t *testing.T) {
	files := loadVectorFiles(t)
	find := func(file, name string) []byte {
		for _, v := range files[file].Vectors {
			if v.Name == name {
				b, _ := hex.DecodeString(v.Bytes)
				return b
			}
		}
		t.Fatalf("no vector %s/%s", file, name)
		return nil
	}
	r, err := DefaultCodec().Decode(find("SubmitTask.json", "submit-every-option"))
	if err != nil {
		t.Fatal(err)
	}
	submit := r.(*SubmitTask)
	if submit.TaskID != "t-42" || *submit.Priority != 1 || *submit.MaxRetries != 5 ||
		*submit.TimeoutMs != 120000 || *submit.ScheduledForMs != 1767225660000 ||
		!submit.RequiresReview || !reflect.DeepEqual(submit.DependsOn, []string{"t-41"}) ||
		!reflect.DeepEqual(submit.Capabilities, []string{"ghl", "browser"}) {
		t.Errorf("SubmitTask fields: %+v", submit)
	}
	r, err = DefaultCodec().Decode(find("SubmitTask.json", "submit-attachments"))
	if err != nil {
		t.Fatal(err)
	}
	want := []TaskAttachment{
		{URL: "https://files.example.com/contracts/acme.pdf", Name: "contract.pdf", SizeBytes: ptr(int64(482113)), ContentType: ptr("application/pdf")},
		{URL: "https://example.com/brief", Name: "brief"},
	}
	if got := r.(*SubmitTask).Attachments; !reflect.DeepEqual(got, want) {
		t.Errorf("SubmitTask attachments: %+v", got)
	}
	r, err = DefaultCodec().Decode(find("SubmitTask.v4.json", "minimal"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.(*SubmitTask).Attachments; len(got) != 0 {
		t.Errorf("a SubmitTask v4 reads without attachments, got %+v", got)
	}
	r, err = DefaultCodec().Decode(find("TaskFailed.v1.json", "minimal"))
	if err != nil {
		t.Fatal(err)
	}
	if failed := r.(*TaskFailed); failed.Outcome != "failed" {
		t.Errorf("a TaskFailed v1 reads as outcome failed, got %q", failed.Outcome)
	}
	r, err = DefaultCodec().Decode(find("Assignment.json", "cancel-assignment"))
	if err != nil {
		t.Fatal(err)
	}
	if a := r.(*Assignment); a.Kind != "cancel" || a.TaskID == nil {
		t.Errorf("cancel assignment: %+v", a)
	}
}

func TestEmbeddedSchemasMatchRepository(t *testing.T) {
	repo, err := filepath.Glob("../../schemas/avro/*.avsc")
	if err != nil || len(repo) == 0 {
		t.Fatalf("no schemas in ../../schemas/avro (%v)", err)
	}
	entries, err := schemaFiles.ReadDir("schemas")
	if err != nil {
		t.Fatal(err)
	}
	var embedded []string
	for _, e := range entries {
		embedded = append(embedded, e.Name())
	}
	var names []string
	for _, path := range repo {
		names = append(names, filepath.Base(path))
		want, _ := os.ReadFile(path)
		got, err := schemaFiles.ReadFile("schemas/" + filepath.Base(path))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("sdks/go/schemas/%s differs from schemas/avro: copy it again "+
				"(cp schemas/avro/*.avsc sdks/go/schemas/)", filepath.Base(path))
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != strings.Join(embedded, ",") {
		t.Errorf("embedded schemas %v, repository %v", embedded, names)
	}
}

func TestUnknownAndForeignBytesAreDecodeErrors(t *testing.T) {
	codec := DefaultCodec()
	for _, data := range [][]byte{nil, []byte("{}"), {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0}} {
		if _, err := codec.Decode(data); err == nil {
			t.Errorf("%x decoded", data)
		} else if _, ok := err.(*DecodeError); !ok {
			t.Errorf("%x: %T, want *DecodeError", data, err)
		}
	}
}

func TestHomePartitionIsKafkaMurmur2(t *testing.T) {
	// Values from streams.kafka.routing (Python) for the same keys.
	cases := []struct {
		key    string
		hash   uint32
		p4, p8 int32
	}{
		{"a", 2731586172, 0, 4},
		{"ab", 316155434, 2, 2},
		{"abc", 479470107, 3, 3},
		{"abcd", 2971317748, 0, 4},
		{"client_acme_001", 1082700054, 2, 6},
		{"py-client-é", 3278170429, 1, 5},
		{"client-42", 4224309023, 3, 7},
	}
	if got := uint32(Murmur2(nil)); got != 275646681 {
		t.Errorf("murmur2(empty) = %d", got)
	}
	for _, c := range cases {
		if got := uint32(Murmur2([]byte(c.key))); got != c.hash {
			t.Errorf("murmur2(%q) = %d, want %d", c.key, got, c.hash)
		}
		if got := HomePartition(c.key, 4); got != c.p4 {
			t.Errorf("home(%q, 4) = %d, want %d", c.key, got, c.p4)
		}
		if got := HomePartition(c.key, 8); got != c.p8 {
			t.Errorf("home(%q, 8) = %d, want %d", c.key, got, c.p8)
		}
	}
}
