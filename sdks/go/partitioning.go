package taskstream

// Murmur2 is Kafka's murmur2 (the Java client's Utils.murmur2, seed 0x9747b28c).
func Murmur2(data []byte) int32 {
	const seed uint32 = 0x9747b28c
	const m uint32 = 0x5bd1e995
	const r = 24
	length := len(data)
	h := seed ^ uint32(length)
	n := length / 4
	for i := 0; i < n; i++ {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// HomePartition is a client's home partition among the partitions of task.commands:
// (murmur2(utf8(client_id)) & 0x7fffffff) % partitions (docs/partitioning.md).
func HomePartition(clientID string, partitions int32) int32 {
	if partitions < 1 {
		panic("taskstream: a topic has at least one partition")
	}
	return (Murmur2([]byte(clientID)) & 0x7fffffff) % partitions
}
