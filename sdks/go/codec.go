package taskstream

import (
	"bytes"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// The schemas are a copy of ../../schemas/avro (go:embed cannot reach outside the module);
// TestEmbeddedSchemasMatchRepository keeps the copy exact.
//
//go:embed schemas/*.avsc
var schemaFiles embed.FS

// wire is hamba/avro set to write what taskstream's codec writes: every array in one block
// with its count and no byte-size header (both are valid Avro; the vectors fix this one).
var wire = avro.Config{
	TagKey:                 "avro",
	BlockLength:            math.MaxInt32,
	DisableBlockSizeHeader: true,
	MaxByteSliceSize:       64 << 20,
}.Freeze()

// singleObjectMagic starts every record value: Avro single-object encoding.
var singleObjectMagic = []byte{0xC3, 0x01}

// Fingerprint is the CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, as the 8
// header bytes (little-endian).
type Fingerprint [8]byte

func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// Schema is one writer schema the codec knows: a current <Name>.avsc or a released
// <Name>.v<N>.avsc.
type Schema struct {
	Name        string // the record's short name, for example "SubmitTask"
	File        string // the file name, for example "SubmitTask.v1.avsc"
	Version     int    // 0 for the current schema, N for <Name>.v<N>.avsc
	Fingerprint Fingerprint
	Writer      avro.Schema
	// Reader is what a body written with Writer is decoded with: the current schema of the
	// record, resolved against Writer (fields added since take their defaults).
	Reader avro.Schema
}

// Codec encodes and decodes taskstream records in single-object encoding. The fingerprint
// alone says what a record is; no schema registry is involved.
type Codec struct {
	byFingerprint map[Fingerprint]*Schema
	current       map[string]*Schema
}

var (
	defaultCodec     *Codec
	defaultCodecErr  error
	defaultCodecOnce sync.Once
)

// DefaultCodec is the codec of the schemas this module embeds.
func DefaultCodec() *Codec {
	defaultCodecOnce.Do(func() {
		sub, err := fs.Sub(schemaFiles, "schemas")
		if err != nil {
			defaultCodecErr = err
			return
		}
		defaultCodec, defaultCodecErr = NewCodec(sub)
	})
	if defaultCodecErr != nil {
		// The embedded schemas are part of the build; failing to parse them is a bug.
		panic(fmt.Sprintf("taskstream: embedded schemas: %v", defaultCodecErr))
	}
	return defaultCodec
}

// NewCodec reads every *.avsc of dir (current and released versions).
func NewCodec(dir fs.FS) (*Codec, error) {
	names, err := fs.Glob(dir, "*.avsc")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	c := &Codec{byFingerprint: map[Fingerprint]*Schema{}, current: map[string]*Schema{}}
	var older []*Schema
	for _, file := range names {
		text, err := fs.ReadFile(dir, file)
		if err != nil {
			return nil, err
		}
		parsed, err := avro.ParseWithCache(string(text), "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
		record, ok := parsed.(*avro.RecordSchema)
		if !ok {
			return nil, fmt.Errorf("schema %s is not a record", file)
		}
		raw, err := parsed.FingerprintUsing(avro.CRC64AvroLE)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
		var fp Fingerprint
		copy(fp[:], raw)
		s := &Schema{Name: record.Name(), File: file, Fingerprint: fp, Writer: parsed}
		stem := strings.TrimSuffix(file, ".avsc")
		if base, version, found := strings.Cut(stem, ".v"); found {
			if base != s.Name {
				return nil, fmt.Errorf("schema %s holds record %s", file, s.Name)
			}
			if _, err := fmt.Sscanf(version, "%d", &s.Version); err != nil || s.Version < 1 {
				return nil, fmt.Errorf("schema %s: version %q is not a number from 1", file, version)
			}
			older = append(older, s)
		} else {
			if stem != s.Name {
				return nil, fmt.Errorf("schema %s holds record %s", file, s.Name)
			}
			s.Reader = parsed
			c.current[s.Name] = s
		}
		if other, dup := c.byFingerprint[fp]; dup {
			return nil, fmt.Errorf("schemas %s and %s have the same fingerprint", other.File, file)
		}
		c.byFingerprint[fp] = s
	}
	compat := avro.NewSchemaCompatibility()
	for _, s := range older {
		cur, ok := c.current[s.Name]
		if !ok {
			return nil, fmt.Errorf("schema %s has no current %s.avsc", s.File, s.Name)
		}
		resolved, err := compat.Resolve(cur.Writer, s.Writer)
		if err != nil {
			return nil, fmt.Errorf("schema %s does not resolve to %s: %w", s.File, cur.File, err)
		}
		s.Reader = resolved
	}
	return c, nil
}

// Current is the current schema of a record name, or nil.
func (c *Codec) Current(name string) *Schema { return c.current[name] }

// ByFingerprint is the schema of a fingerprint, or nil.
func (c *Codec) ByFingerprint(fp Fingerprint) *Schema { return c.byFingerprint[fp] }

// Schemas lists every schema the codec knows, by file name.
func (c *Codec) Schemas() []*Schema {
	out := make([]*Schema, 0, len(c.byFingerprint))
	for _, s := range c.byFingerprint {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// EncodeAs writes v (a struct with avro tags, or a map[string]any) with schema s.
func (c *Codec) EncodeAs(s *Schema, v any) ([]byte, error) {
	body, err := wire.Marshal(s.Writer, v)
	if err != nil {
		return nil, &EncodeError{Record: s.Name, Err: err}
	}
	out := make([]byte, 0, 10+len(body))
	out = append(out, singleObjectMagic...)
	out = append(out, s.Fingerprint[:]...)
	return append(out, body...), nil
}

// Encode writes a record with its current schema.
func (c *Codec) Encode(r Record) ([]byte, error) {
	s := c.current[r.RecordName()]
	if s == nil {
		return nil, &EncodeError{Record: r.RecordName(), Err: fmt.Errorf("no schema")}
	}
	return c.EncodeAs(s, r)
}

// Header splits a record value into its schema and body.
func (c *Codec) Header(data []byte) (*Schema, []byte, error) {
	if len(data) < 10 || !bytes.Equal(data[:2], singleObjectMagic) {
		return nil, nil, &DecodeError{Reason: "not Avro single-object encoding (no C3 01 header)"}
	}
	var fp Fingerprint
	copy(fp[:], data[2:10])
	s := c.byFingerprint[fp]
	if s == nil {
		return nil, nil, &DecodeError{Reason: fmt.Sprintf("unknown schema fingerprint %s", fp)}
	}
	return s, data[10:], nil
}

// DecodeInto reads a record value into v (a pointer to a struct with avro tags, or to an
// any), resolving older writer schemas to the current one; it returns the record's name.
func (c *Codec) DecodeInto(data []byte, v any) (string, error) {
	s, body, err := c.Header(data)
	if err != nil {
		return "", err
	}
	if err := wire.Unmarshal(s.Reader, body, v); err != nil {
		return s.Name, &DecodeError{Record: s.Name, Reason: err.Error()}
	}
	return s.Name, nil
}

// Decode reads a record value into its typed struct when the SDK has one (commands,
// Assignment, TaskCompleted, TaskFailed), else into a *GenericRecord.
func (c *Codec) Decode(data []byte) (Record, error) {
	s, _, err := c.Header(data)
	if err != nil {
		return nil, err
	}
	r := newRecord(s.Name)
	target := any(r)
	if g, ok := r.(*GenericRecord); ok {
		target = &g.Value
	}
	if _, err := c.DecodeInto(data, target); err != nil {
		return nil, err
	}
	return r, nil
}
