package dev.kora.tests;


import org.junit.jupiter.api.extension.RegisterExtension;

/** The Java client against {@code kora dev}. */
class DevClientTest extends ClientSuite {
    @RegisterExtension
    static final KoraExtension kora = KoraExtension.dev();

    @Override
    KoraProcess kora() {
        return kora.get();
    }

    @Override
    int brokers() {
        return 1;
    }
}
