package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The Java client against Kora: producer, consumer (both group protocols) and AdminClient.
 * Each subclass runs the same tests against one kind of Kora (kora dev, a 3-broker cell).
 */
abstract class ClientSuite {
    /** The Kora under test; started once per subclass. */
    abstract KoraProcess kora();

    /** Brokers the cluster has. */
    abstract int brokers();

    static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    Properties common() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, kora().bootstrap());
        return p;
    }

    Admin admin() {
        Properties p = common();
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60_000);
        return Admin.create(p);
    }

    KafkaProducer<String, String> producer(Map<String, Object> extra) {
        Properties p = common();
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    KafkaConsumer<String, String> consumer(String group, String protocol) {
        Properties p = common();
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        }
        return new KafkaConsumer<>(p);
    }

    void createTopic(String name, int partitions) throws Exception {
        try (Admin a = admin()) {
            short rf = (short) Math.min(3, brokers());
            a.createTopics(List.of(new NewTopic(name, partitions, rf))).all().get(60, TimeUnit.SECONDS);
        }
    }

    /** Reads {@code count} records from every partition of {@code topic} without a group. */
    List<ConsumerRecord<String, String>> readAll(String topic, int partitions, int count) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer(null, null)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (out.size() < count && System.nanoTime() < deadline) {
                c.poll(Duration.ofMillis(500)).forEach(out::add);
            }
        }
        return out;
    }

    @ParameterizedTest(name = "idempotent producer, compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void idempotentProducerWithEveryCodecAndHeaders(String codec) throws Exception {
        String topic = unique("java-codec-" + codec);
        createTopic(topic, 3);
        int n = 300;
        Map<String, Object> cfg = Map.of(
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                ProducerConfig.ACKS_CONFIG, "all",
                ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 5);
        Map<Integer, List<Long>> offsets = new HashMap<>();
        try (KafkaProducer<String, String> p = producer(cfg)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, "key-" + (i % 17), "value-" + i);
                r.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                r.headers().add("codec", codec.getBytes(StandardCharsets.UTF_8));
                sent.add(p.send(r));
            }
            p.flush();
            for (Future<RecordMetadata> f : sent) {
                RecordMetadata m = f.get(30, TimeUnit.SECONDS);
                offsets.computeIfAbsent(m.partition(), k -> new ArrayList<>()).add(m.offset());
            }
        }
        // Offsets of each partition are dense and increasing, as acknowledged.
        for (List<Long> o : offsets.values()) {
            for (int i = 0; i < o.size(); i++) {
                assertEquals((long) i, o.get(i), "offsets of one partition are dense");
            }
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 3, n);
        assertEquals(n, got.size(), "every acknowledged record is read back once");
        Set<String> values = new HashSet<>();
        Map<String, Integer> partitionOfKey = new HashMap<>();
        for (ConsumerRecord<String, String> r : got) {
            values.add(r.value());
            int seq = Integer.parseInt(r.value().substring("value-".length()));
            assertEquals("key-" + (seq % 17), r.key());
            Header h = r.headers().lastHeader("seq");
            assertNotNull(h, "headers survive");
            assertEquals(Integer.toString(seq), new String(h.value(), StandardCharsets.UTF_8));
            assertEquals(codec, new String(r.headers().lastHeader("codec").value(), StandardCharsets.UTF_8));
            Integer before = partitionOfKey.putIfAbsent(r.key(), r.partition());
            assertTrue(before == null || before == r.partition(), "one key, one partition");
        }
        assertEquals(n, values.size());
    }

    @ParameterizedTest(name = "group.protocol={0}")
    @ValueSource(strings = {"classic", "consumer"})
    void twoConsumersShareAGroupAndCommit(String protocol) throws Exception {
        String topic = unique("java-group-" + protocol);
        String group = unique("g-" + protocol);
        int partitions = 4;
        int n = 400;
        createTopic(topic, partitions);
        try (KafkaProducer<String, String> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            for (int i = 0; i < n; i++) {
                p.send(new ProducerRecord<>(topic, i % partitions, null, "m-" + i));
            }
            p.flush();
        }
        Set<String> seen = new HashSet<>();
        Set<TopicPartition> assignedA = new HashSet<>();
        Set<TopicPartition> assignedB = new HashSet<>();
        try (KafkaConsumer<String, String> a = consumer(group, protocol);
             KafkaConsumer<String, String> b = consumer(group, protocol)) {
            a.subscribe(List.of(topic));
            b.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
            while (System.nanoTime() < deadline
                    && (seen.size() < n || assignedA.isEmpty() || assignedB.isEmpty()
                        || assignedA.size() + assignedB.size() != partitions)) {
                a.poll(Duration.ofMillis(200)).forEach(r -> seen.add(r.value()));
                b.poll(Duration.ofMillis(200)).forEach(r -> seen.add(r.value()));
                assignedA = new HashSet<>(a.assignment());
                assignedB = new HashSet<>(b.assignment());
                if (!a.assignment().isEmpty()) {
                    a.commitSync();
                }
                if (!b.assignment().isEmpty()) {
                    b.commitSync();
                }
            }
            assertEquals(n, seen.size(), "every record consumed");
            assertFalse(assignedA.isEmpty(), "both members get partitions");
            assertFalse(assignedB.isEmpty(), "both members get partitions");
            Set<TopicPartition> union = new HashSet<>(assignedA);
            union.addAll(assignedB);
            assertEquals(partitions, union.size(), "the group covers every partition");
            assignedA.retainAll(assignedB);
            assertTrue(assignedA.isEmpty(), "no partition is assigned twice");
            a.commitSync();
            b.commitSync();

            try (Admin admin = admin()) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
                long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
                assertEquals(n, total, "committed offsets add up to what was read");
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all()
                        .get(30, TimeUnit.SECONDS).get(group);
                assertEquals(2, d.members().size());
                assertEquals(GroupState.STABLE, d.groupState());
            }
        }
    }

    /** No transactions yet: a transactional producer must fail at once with a clear error, not retry for ever. */
    @Test
    void transactionalProducerFailsFastWithAClearError() {
        Map<String, Object> cfg = Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, unique("txn"),
                ProducerConfig.MAX_BLOCK_MS_CONFIG, 120_000);
        long started = System.nanoTime();
        try (KafkaProducer<String, String> p = producer(cfg)) {
            Exception e = org.junit.jupiter.api.Assertions.assertThrows(Exception.class, p::initTransactions);
            Throwable cause = e instanceof org.apache.kafka.common.KafkaException && e.getCause() != null ? e.getCause() : e;
            assertTrue(e instanceof org.apache.kafka.common.errors.TransactionalIdAuthorizationException
                    || cause instanceof org.apache.kafka.common.errors.TransactionalIdAuthorizationException, e.toString());
        }
        long seconds = TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - started);
        assertTrue(seconds < 30, "failed after " + seconds + " s, not at once");
    }

    @Test
    void adminTopicsConfigsAndPartitions() throws Exception {
        String topic = unique("java-admin");
        try (Admin a = admin()) {
            short rf = (short) Math.min(3, brokers());
            NewTopic nt = new NewTopic(topic, 2, rf).configs(Map.of("retention.ms", "3600000", "cleanup.policy", "delete"));
            a.createTopics(List.of(nt)).all().get(60, TimeUnit.SECONDS);
            ExecutionException dup = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                    () -> a.createTopics(List.of(new NewTopic(topic, 2, rf))).all().get(30, TimeUnit.SECONDS));
            assertInstanceOf(TopicExistsException.class, dup.getCause());

            TopicDescription td = a.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            assertEquals(2, td.partitions().size());
            td.partitions().forEach(p -> assertEquals(rf, p.replicas().size()));

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = a.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
            assertEquals("3600000", cfg.get("retention.ms").value());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, cfg.get("retention.ms").source());

            a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", ""), AlterConfigOp.OpType.DELETE))))
                    .all().get(30, TimeUnit.SECONDS);
            cfg = a.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
            assertEquals("7200000", cfg.get("retention.ms").value());
            assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, cfg.get("cleanup.policy").source());

            a.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(60, TimeUnit.SECONDS);
            td = a.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            assertEquals(5, td.partitions().size());
            ExecutionException fewer = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                    () -> a.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get(30, TimeUnit.SECONDS));
            assertInstanceOf(InvalidPartitionsException.class, fewer.getCause());

            assertTrue(a.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic));
            a.deleteTopics(List.of(topic)).all().get(60, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (a.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic) && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            assertFalse(a.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic));
            ExecutionException gone = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                    () -> a.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS));
            assertInstanceOf(UnknownTopicOrPartitionException.class, gone.getCause());
        }
    }

    @Test
    void adminDescribesTheClusterAndItsLogDirs() throws Exception {
        String topic = unique("java-logdirs");
        createTopic(topic, 2);
        try (KafkaProducer<String, String> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            for (int i = 0; i < 50; i++) {
                p.send(new ProducerRecord<>(topic, i % 2, null, "x".repeat(100)));
            }
            p.flush();
        }
        try (Admin a = admin()) {
            DescribeClusterResult c = a.describeCluster();
            Collection<Node> nodes = c.nodes().get(30, TimeUnit.SECONDS);
            assertEquals(brokers(), nodes.size());
            assertNotNull(c.clusterId().get(30, TimeUnit.SECONDS));
            assertNotNull(c.controller().get(30, TimeUnit.SECONDS));

            List<Integer> ids = nodes.stream().map(Node::id).toList();
            Map<Integer, Map<String, LogDirDescription>> dirs =
                    a.describeLogDirs(ids).allDescriptions().get(30, TimeUnit.SECONDS);
            assertEquals(brokers(), dirs.size());
            long bytes = 0;
            int replicas = 0;
            for (Map<String, LogDirDescription> byDir : dirs.values()) {
                assertEquals(1, byDir.size(), "one log dir per broker");
                for (LogDirDescription d : byDir.values()) {
                    assertTrue(d.error() == null, "log dir is healthy");
                    assertTrue(d.totalBytes().isPresent() && d.usableBytes().isPresent());
                    for (var e : d.replicaInfos().entrySet()) {
                        if (e.getKey().topic().equals(topic)) {
                            replicas++;
                            bytes += e.getValue().size();
                        }
                    }
                }
            }
            assertEquals(2 * Math.min(3, brokers()), replicas, "every replica is listed where it lives");
            assertTrue(bytes >= 2L * 50 * 100 / 2, "replica sizes count the records");
        }
    }

    @Test
    void adminGroupsAndOffsets() throws Exception {
        String topic = unique("java-offsets");
        String group = unique("g-admin");
        createTopic(topic, 2);
        try (KafkaProducer<String, String> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            for (int i = 0; i < 20; i++) {
                p.send(new ProducerRecord<>(topic, i % 2, null, "v" + i));
            }
            p.flush();
        }
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (Admin a = admin()) {
            ListOffsetsResult ends = a.listOffsets(Map.of(p0, OffsetSpec.latest(), p1, OffsetSpec.latest()));
            assertEquals(10, ends.partitionResult(p0).get(30, TimeUnit.SECONDS).offset());
            assertEquals(0, a.listOffsets(Map.of(p0, OffsetSpec.earliest())).partitionResult(p0)
                    .get(30, TimeUnit.SECONDS).offset());

            // An empty group's offsets are set by the admin, as kafka-consumer-groups --reset-offsets does.
            a.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(4), p1, new OffsetAndMetadata(7)))
                    .all().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> got =
                    a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            assertEquals(4, got.get(p0).offset());
            assertEquals(7, got.get(p1).offset());
            Collection<GroupListing> groups = a.listGroups().all().get(30, TimeUnit.SECONDS);
            assertTrue(groups.stream().anyMatch(g -> g.groupId().equals(group)), "the group is listed");

            // A consumer of the group starts where the admin put it.
            try (KafkaConsumer<String, String> c = consumer(group, "classic")) {
                c.subscribe(List.of(topic));
                int read = 0;
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (read < 9 && System.nanoTime() < deadline) {
                    read += c.poll(Duration.ofMillis(300)).count();
                }
                assertEquals(9, read, "6 left on partition 0 and 3 on partition 1");
            }

            a.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get(30, TimeUnit.SECONDS);
            got = a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            assertFalse(got.containsKey(p1));
            a.deleteConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS);
            groups = a.listGroups().all().get(30, TimeUnit.SECONDS);
            assertFalse(groups.stream().anyMatch(g -> g.groupId().equals(group)), "the group is gone");
        }
    }
}
