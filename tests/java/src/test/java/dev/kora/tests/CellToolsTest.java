package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Kafka's tools for moving partitions and leaders, against a 3-broker cell. */
class CellToolsTest {
    // No automatic preferred-leader elections: the test elects by hand.
    @RegisterExtension
    static final KoraExtension kora = KoraExtension.cell(3, "--leader-imbalance-check-interval-seconds", "0");

    static TopicDescription describe(Admin a, String t) throws Exception {
        return a.describeTopics(List.of(t)).allTopicNames().get(30, TimeUnit.SECONDS).get(t);
    }

    @Test
    void reassignPartitionsThenElectThePreferredLeader() throws Exception {
        String t = ClientSuite.unique("tool-reassign");
        try (Admin a = Admin.create(java.util.Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, kora.bootstrap()))) {
            a.createTopics(List.of(new NewTopic(t, 1, (short) 2))).all().get(60, TimeUnit.SECONDS);
            TopicDescription d = describe(a, t);
            List<Integer> replicas = d.partitions().get(0).replicas().stream().map(Node::id).toList();
            int leader = d.partitions().get(0).leader().id();
            int spare = List.of(1, 2, 3).stream().filter(id -> !replicas.contains(id)).findFirst().orElseThrow();
            // The spare broker first (the new preferred leader), then the current leader.
            List<Integer> target = List.of(spare, leader);
            Path plan = Files.createTempFile("reassign", ".json");
            Files.writeString(plan, "{\"version\":1,\"partitions\":[{\"topic\":\"" + t + "\",\"partition\":0,\"replicas\":["
                    + spare + "," + leader + "]}]}");
            String out = Tools.run(Tools.REASSIGN, "--bootstrap-server", kora.bootstrap(), "--reassignment-json-file", plan.toString(),
                    "--execute").ok().out();
            assertTrue(out.contains("Successfully started partition reassignment"), out);
            String verify = "";
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
            while (System.nanoTime() < deadline) {
                verify = Tools.run(Tools.REASSIGN, "--bootstrap-server", kora.bootstrap(), "--reassignment-json-file", plan.toString(),
                        "--verify").ok().out();
                if (verify.contains("Reassignment of partition " + t + "-0 is completed")) {
                    break;
                }
                Thread.sleep(500);
            }
            assertTrue(verify.contains("Reassignment of partition " + t + "-0 is completed"), verify);
            d = describe(a, t);
            assertEquals(target, d.partitions().get(0).replicas().stream().map(Node::id).toList());
            assertEquals(leader, d.partitions().get(0).leader().id(), "the leader stayed through the move");

            String elect = Tools.run(Tools.LEADER_ELECTION, "--bootstrap-server", kora.bootstrap(), "--election-type", "PREFERRED",
                    "--topic", t, "--partition", "0").ok().out();
            assertTrue(elect.contains("Successfully completed leader election (PREFERRED) for partitions " + t + "-0"), elect);
            assertEquals(spare, describe(a, t).partitions().get(0).leader().id(), "the preferred replica leads");
            String again = Tools.run(Tools.LEADER_ELECTION, "--bootstrap-server", kora.bootstrap(), "--election-type", "PREFERRED",
                    "--topic", t, "--partition", "0").ok().out();
            assertTrue(again.contains("Valid replica already elected for partitions " + t + "-0"), again);
            Files.delete(plan);
        }
    }

    @Test
    void topicsWithReplicasOnEveryBroker() throws Exception {
        String t = ClientSuite.unique("tool-cell-topics");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "3",
                "--replication-factor", "3").ok();
        String d = Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--describe", "--topic", t).ok().out();
        assertTrue(d.contains("ReplicationFactor: 3"), d);
        long insync = d.lines().filter(l -> l.contains("Partition: ")).filter(l -> l.matches(".*Isr: \\d+,\\d+,\\d+.*")).count();
        assertEquals(3, insync, d);
        String under = Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--describe", "--topic", t,
                "--under-replicated-partitions").ok().out();
        assertTrue(under.isBlank(), under);
    }
}
