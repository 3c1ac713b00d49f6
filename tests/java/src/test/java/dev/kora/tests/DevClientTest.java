package dev.kora.tests;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/** The Java client against {@code kora dev}. */
class DevClientTest extends ClientSuite {
    private static KoraProcess kora;

    @BeforeAll
    static void start() throws Exception {
        kora = KoraProcess.dev();
    }

    @AfterAll
    static void stop() throws Exception {
        if (kora != null) {
            kora.close();
        }
    }

    @Override
    KoraProcess kora() {
        return kora;
    }

    @Override
    int brokers() {
        return 1;
    }
}
