package taskstream

import (
	"os"
	osuser "os/user"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is what the client and the executor need to reach taskstream's topics. Defaults
// are the Python processor's (streams/settings.py).
type Config struct {
	// Brokers: host:port seeds (KAFKA_BOOTSTRAP_SERVERS, comma separated).
	Brokers []string
	// TopicPrefix names the topics <prefix>.<name> (TASKSTREAM_TOPIC_PREFIX, default "task").
	TopicPrefix string
	// MaxPayloadBytes: the largest encoded command (TASKSTREAM_MAX_PAYLOAD_BYTES, 1 MiB).
	MaxPayloadBytes int
	// Actor names who sends the client's commands (their actor field): TASKSTREAM_ACTOR,
	// else <user>@<host> of this process, as the Python SDK does.
	Actor string
	// KafkaOptions are added to every franz-go client this SDK makes (TLS, SASL, logging).
	KafkaOptions []kgo.Opt
}

const (
	defaultTopicPrefix     = "task"
	defaultMaxPayloadBytes = 1 << 20
	maxIDLength            = 512
)

// RetryTiers are the delay tiers task.retry.<n>s.
var RetryTiers = []string{"retry.1s", "retry.2s", "retry.4s", "retry.8s", "retry.16s", "retry.32s"}

// ConfigFromEnv reads KAFKA_BOOTSTRAP_SERVERS, TASKSTREAM_TOPIC_PREFIX and
// TASKSTREAM_MAX_PAYLOAD_BYTES, the variables the Python processes read.
func ConfigFromEnv() Config {
	cfg := Config{}
	for _, b := range strings.Split(os.Getenv("KAFKA_BOOTSTRAP_SERVERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.Brokers = append(cfg.Brokers, b)
		}
	}
	cfg.TopicPrefix = os.Getenv("TASKSTREAM_TOPIC_PREFIX")
	cfg.Actor = os.Getenv("TASKSTREAM_ACTOR")
	if n, err := strconv.Atoi(os.Getenv("TASKSTREAM_MAX_PAYLOAD_BYTES")); err == nil {
		cfg.MaxPayloadBytes = n
	}
	return cfg.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.TopicPrefix == "" {
		c.TopicPrefix = defaultTopicPrefix
	}
	if c.MaxPayloadBytes <= 0 {
		c.MaxPayloadBytes = defaultMaxPayloadBytes
	}
	if c.Actor == "" {
		c.Actor = defaultActor()
	}
	if len(c.Brokers) == 0 {
		c.Brokers = []string{"127.0.0.1:9092"}
	}
	return c
}

// Topic is the full name of a logical topic: Topic("commands") is "task.commands".
func (c Config) Topic(name string) string {
	prefix := c.TopicPrefix
	if prefix == "" {
		prefix = defaultTopicPrefix
	}
	return prefix + "." + name
}

func (c Config) kafkaOpts(extra ...kgo.Opt) []kgo.Opt {
	// Uncompressed batches: franz-go's default is snappy, which the Python processor
	// (aiokafka without python-snappy) cannot read. Commands are small.
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ProducerBatchCompression(kgo.NoCompression())}
	opts = append(opts, c.KafkaOptions...)
	return append(opts, extra...)
}

func defaultActor() string {
	user := os.Getenv("USER")
	if user == "" {
		if u, err := osuser.Current(); err == nil {
			user = u.Username
		} else {
			user = "uid" + strconv.Itoa(os.Getuid())
		}
	}
	host, _ := os.Hostname()
	actor := user + "@" + host
	if len(actor) > 200 {
		actor = actor[:200]
	}
	return actor
}
