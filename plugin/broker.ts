// The broker contract is declared once, with the published types.
export type { Broker, BrokerEntry, BrokerMessage, BrokerSink, BrokerTopic } from '../types/broker'
