package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The Java client against a 3-broker cell from {@code kora cell up}. */
class CellClientTest extends ClientSuite {
    @RegisterExtension
    static final KoraExtension kora = KoraExtension.cell(3);

    @Override
    KoraProcess kora() {
        return kora.get();
    }

    @Override
    int brokers() {
        return 3;
    }

    @Test
    void adminReassignsAPartition() throws Exception {
        String topic = unique("java-reassign");
        createTopic(topic, 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin a = admin()) {
            TopicDescription before = a.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            List<Integer> replicas = before.partitions().get(0).replicas().stream().map(Node::id).toList();
            assertEquals(3, replicas.size());
            // Drop the first replica: the partition moves to the other two.
            List<Integer> target = replicas.subList(1, 3);
            a.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(target))))
                    .all().get(60, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            List<Integer> now = replicas;
            while (System.nanoTime() < deadline) {
                Map<TopicPartition, PartitionReassignment> ongoing =
                        a.listPartitionReassignments().reassignments().get(30, TimeUnit.SECONDS);
                now = a.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic)
                        .partitions().get(0).replicas().stream().map(Node::id).toList();
                if (!ongoing.containsKey(tp) && now.equals(target)) {
                    break;
                }
                Thread.sleep(200);
            }
            assertEquals(target, now, "the partition lives on the target replicas");
            assertTrue(a.listPartitionReassignments().reassignments().get(30, TimeUnit.SECONDS).isEmpty());
        }
    }
}
